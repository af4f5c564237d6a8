"""Variants of a model directory that share its ONNX files (hard-linked, else copied) and differ only in the card:
no onnx or TensorFlow needed, so the serving tests and the benchmarks make them with the serving install alone.

- `linked_copy(model_dir, out, change)`: the card rewritten by `change(card)`;
- `grid_copy(model_dir, out, grid, resize_shorter, tag)`: another crop grid at another working size (a small
  multi-crop model for the evidence-map tests);
- `single_crop_copy(model_dir, out)`: the recipe cut to ONE centre crop (the service tests' model, the benchmarks'
  single-crop baseline);
- `recipe_copy(model_dir, out, **preprocessing)`: other preprocessing, same files (a model id of its own:
  contract/card.py `Card.model_id` covers the recipe).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.card import Card, load_card, write_card


def linked_copy(model_dir: str | Path, out: str | Path, change: Callable[[Card], Card]) -> Path:
    card = load_card(Path(model_dir))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in card.onnx_files():
        target = out / name
        if not target.exists():
            try:
                os.link(Path(model_dir) / name, target)
            except OSError:
                shutil.copyfile(Path(model_dir) / name, target)
    write_card(change(card), out)
    return out


def recipe_copy(model_dir: str | Path, out: str | Path, **preprocessing: Any) -> Path:
    """The same model with other preprocessing fields (e.g. `grid=(2, 1)`, `resize_shorter=256`)."""

    def change(card: Card) -> Card:
        p = card.backbone.preprocessing.model_copy(update=preprocessing)
        return card.model_copy(update={"backbone": card.backbone.model_copy(update={"preprocessing": p})})

    return linked_copy(model_dir, out, change)


def grid_copy(model_dir: str | Path, out: str | Path, grid: tuple[int, int], resize_shorter: int, tag: str) -> Path:
    """A copy of a model directory whose recipe is another crop grid at another working size.

    Same backbone, head and calibration tables; only `preprocessing.grid` and `resize_shorter` change (no quality
    model, bands or same-painting threshold: they describe the original recipe at its working resolution), and
    the version says so (`tag`).
    """

    def change(card: Card) -> Card:
        p = card.backbone.preprocessing
        backbone = card.backbone.model_copy(
            update={"preprocessing": p.model_copy(update={"grid": grid, "resize_shorter": resize_shorter})}
        )
        # the quality model and its bands were measured with the full recipe at its working resolution: they do
        # not describe another one, so the copy has neither (its rates are the published tables')
        calibration = card.calibration.model_copy(update={"quality": None, "bands": [], "same_work": None})
        return card.model_copy(
            update={"backbone": backbone, "calibration": calibration, "version": f"{card.version}-{tag}"}
        )

    return linked_copy(model_dir, out, change)


def single_crop_copy(model_dir: str | Path, out: str | Path, crop_side: int | None = None) -> Path:
    """A copy of a model directory whose recipe is ONE centre crop (`grid_copy`: grid (1, 1), `resize_shorter` the
    crop side). The service tests run on it: the serving path the shipped model takes, at a sixteenth of its
    backbone work. Benchmarks use it as the single-crop baseline.
    """
    side = crop_side or load_card(Path(model_dir)).backbone.preprocessing.crop[0]
    return grid_copy(model_dir, out, (1, 1), side, "1crop")
