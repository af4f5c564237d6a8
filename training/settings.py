"""What each stage of `python -m training` is asked to do, with every default in one place.

The CLI's flags take their defaults from these classes, the stages take them as arguments, and `embed` records
its settings in the run state (training/workdir.py). Light on purpose (no TensorFlow): `python -m training
--help` builds its parser from here. Covered by tests/training/test_workdir.py and tests/training/test_e2e.py.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

DEFAULT_HEADS = ("seed", "symmetric")  # every kind of training/heads/trained.py KINDS, unless --heads says otherwise
# the 19M-parameter seed head costs ~10x the symmetric head per epoch: the CLI caps its epochs (--seed-head-epochs)
SEED_HEAD_EPOCHS = 10


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SynthSettings(_Settings):
    """`synth`: the synthetic corpus. The defaults are the shipped model's corpus (`make-default`): 24 paintings
    per artist so that portfolio k=20 has 21-image artists to draw from; about 13 minutes end to end on 2
    (shared) CPU cores."""

    artists: int = 350
    per_artist: int = 24
    size: int = 256
    seed: int = 0
    workers: int = os.cpu_count() or 1


class SplitSettings(_Settings):
    """The artist-disjoint split (training/data/datasets.py `split_artists`)."""

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    seen_test_fraction: float = 0.0


class EmbedSettings(_Settings):
    """`embed`: corpus → split → backbone embeddings."""

    corpus: str  # pbn:ROOT | folders:ROOT | synthetic:ROOT
    arch: str = "efficientnet_lite2"
    image_size: int = 224
    weights: str = "auto"  # auto | none | imagenet | a local weights file
    split: SplitSettings = SplitSettings()
    batch_size: int = 32

    @property
    def embedder_weights(self) -> str | None:
        """build_embedder's spelling: "none" means random initialisation."""
        return None if self.weights.lower() == "none" else self.weights


@dataclass
class TrainConfig:
    """`train`: how a pair head is fitted (training/heads/train.py `train_head`)."""

    epochs: int = 40
    pairs_per_epoch: int = 20_000
    batch_size: int = 256
    val_pairs: int = 4_000
    patience: int = 6
    learning_rate: float | None = None  # None: the per-kind default in training/heads/train.py
    seed: int = 0
    # per-kind epoch caps (the CLI sets {"seed": SEED_HEAD_EPOCHS})
    epochs_by_kind: dict = field(default_factory=dict)
    # per-kind keyword arguments for build_head (dropout, widths, projection_dim, …)
    head_kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class EvalSettings(_Settings):
    """`evaluate`: balanced pairs per split and simulated portfolio trials per k."""

    n_pairs: int = 4000
    n_trials: int = 1000


class ExportSettings(_Settings):
    """`export`: where the model directory goes and what the card calls it."""

    out: Path
    name: str | None = None  # None: the --out folder name
    version: str = "1.0.0"


def default(cls: type, name: str) -> Any:
    """The default of one field of a settings class (pydantic model or dataclass), for the CLI's flags."""
    if dataclasses.is_dataclass(cls):
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return cls.model_fields[name].get_default(call_default_factory=True)  # type: ignore[attr-defined]
