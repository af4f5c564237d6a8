"""The multi-crop recipe: contract/recipe.py (crop_boxes, model_inputs, crop_features, combine) and the card fields
that describe it (Preprocessing.grid, EmbeddingRecipe, BackboneSpec.output_dim/crop_dim, HeadSpec kind cosine)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from contract.card import CARD_FILE, BackboneSpec, Card, EmbeddingRecipe, HeadSpec, Preprocessing, load_card
from contract.recipe import (
    combine,
    crop_boxes,
    crop_features,
    model_inputs,
    preprocess,
    resize_and_crop,
    resized,
    to_input,
)
from tests.service.conftest import painting

P = Preprocessing(resize_shorter=32, crop=(24, 28), scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))


@dataclass(frozen=True)
class _Spec:
    preprocessing: Preprocessing


def grid(rows: int, cols: int, **update: Any) -> Preprocessing:
    return P.model_copy(update={"grid": (rows, cols), **update})


# ---- crop_boxes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 40), (40, 64), (32, 32), (28, 24), (61, 33)])
def test_a_one_by_one_grid_is_the_centre_crop(size: tuple[int, int]) -> None:
    img = painting(1, size)
    big = resized(img, P)
    (box,) = crop_boxes(big.size, P)
    w, h = big.size
    assert box == ((w - 28) // 2, (h - 24) // 2, (w - 28) // 2 + 28, (h - 24) // 2 + 24)
    assert np.array_equal(np.asarray(big.crop(box)), np.asarray(resize_and_crop(img, P)))


@pytest.mark.parametrize("size", [(100, 60), (60, 100), (28, 24), (30, 25), (257, 129)])
def test_a_four_by_four_grid_covers_the_picture_edge_to_edge_row_by_row(size: tuple[int, int]) -> None:
    p = grid(4, 4)
    w, h = size
    boxes = crop_boxes(size, p)
    assert len(boxes) == 16
    for left, top, right, bottom in boxes:
        assert left >= 0 and top >= 0 and right <= w and bottom <= h
        assert (right - left, bottom - top) == (28, 24)
    assert boxes[0][:2] == (0, 0)
    assert boxes[-1][2:] == (w, h)
    rows = [boxes[r * 4 : (r + 1) * 4] for r in range(4)]
    for row in rows:
        assert len({b[1] for b in row}) == 1, "a row shares its top"
        xs = [b[0] for b in row]
        assert xs == sorted(xs) and xs[0] == 0 and row[-1][2] == w
    tops = [row[0][1] for row in rows]
    assert tops == sorted(tops) and tops[0] == 0 and rows[-1][0][3] == h
    if w > 28 + 3 and h > 24 + 3:  # room to spread: every crop is somewhere else
        assert len(set(boxes)) == 16


def test_a_picture_no_bigger_than_the_crop_repeats_the_one_crop() -> None:
    boxes = crop_boxes((28, 24), grid(3, 2))
    assert boxes == [(0, 0, 28, 24)] * 6


def test_rectangular_grid_order() -> None:
    boxes = crop_boxes((128, 64), grid(2, 3))
    assert boxes == [
        (0, 0, 28, 24),
        (50, 0, 78, 24),
        (100, 0, 128, 24),
        (0, 40, 28, 64),
        (50, 40, 78, 64),
        (100, 40, 128, 64),
    ]


# ---- model_inputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_model_inputs_of_a_two_by_three_grid_are_the_hand_cut_crops(layout: str) -> None:
    p = grid(2, 3, layout=layout)
    img = painting(5, (90, 50))
    x = model_inputs(img, _Spec(p))
    assert x.dtype == np.float32
    assert x.shape == ((6, 24, 28, 3) if layout == "NHWC" else (6, 3, 24, 28))
    big = resized(img, p)
    boxes = crop_boxes(big.size, p)
    assert len(boxes) == 6
    for got, box in zip(x, boxes, strict=True):
        want = to_input(np.asarray(big.crop(box), dtype=np.uint8), p)
        assert np.array_equal(got, want)
    # the crops differ: the grid really spreads over the picture
    assert not np.array_equal(x[0], x[-1])


def test_model_inputs_of_a_one_by_one_grid_is_the_old_single_crop() -> None:
    img = painting(6, (70, 45))
    x = model_inputs(img, _Spec(P))
    assert x.shape == (1, 24, 28, 3)
    assert np.array_equal(x, preprocess(img, P)[None])


def test_model_inputs_of_a_grey_picture_are_rgb() -> None:
    img = painting(7, (60, 40)).convert("L")
    p = grid(2, 2)
    assert np.array_equal(model_inputs(img, _Spec(p)), model_inputs(img.convert("RGB"), _Spec(p)))


def test_resized_never_goes_below_the_crop() -> None:
    tall = Image.new("RGB", (10, 300))  # shorter side 10 → 32, longer scaled to 960
    assert resized(tall, P).size == (32, 960)
    assert resized(Image.new("RGB", (600, 30)), P).size == (640, 32)
    narrow = Preprocessing.model_validate({**P.model_dump(mode="json"), "resize_shorter": 20})  # below the crop
    assert resized(Image.new("RGB", (100, 100)), narrow).size == (28, 24)


# ---- crop_features / combine --------------------------------------------------------------------------------
def test_combine_with_a_slice_and_l2_mean_is_the_manual_computation() -> None:
    rng = np.random.default_rng(0)
    out = rng.normal(size=(6, 10)).astype(np.float32)
    recipe = EmbeddingRecipe(pooled_dim=4, crop_features=(2, 6), combine="l2_mean")
    kept = out[:, 2:6].astype(np.float64)
    unit = kept / np.linalg.norm(kept, axis=1, keepdims=True)
    feats = crop_features(out, recipe)
    assert feats.shape == (6, 4)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(feats, unit, rtol=1e-5, atol=1e-6)
    emb = combine(out, recipe)
    assert emb.dtype == np.float32 and emb.shape == (4,)
    np.testing.assert_allclose(emb, unit.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_l2_mean_weighs_every_crop_the_same() -> None:
    out = np.array([[100.0, 0.0], [0.0, 1.0]], np.float32)
    emb = combine(out, EmbeddingRecipe(pooled_dim=2, combine="l2_mean"))
    np.testing.assert_allclose(emb, [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(combine(out, EmbeddingRecipe(pooled_dim=2)), [50.0, 0.5], rtol=1e-6)


def test_mean_without_a_slice_is_the_plain_mean() -> None:
    rng = np.random.default_rng(1)
    out = rng.normal(size=(16, 7)).astype(np.float32)
    recipe = EmbeddingRecipe(pooled_dim=7)
    assert recipe.combine == "mean" and recipe.crop_features is None
    assert np.array_equal(crop_features(out, recipe), out)
    np.testing.assert_allclose(combine(out, recipe), out.mean(axis=0), rtol=1e-6, atol=1e-7)
    single = out[:1]
    np.testing.assert_allclose(combine(single, recipe), single[0], rtol=1e-7)


@pytest.mark.parametrize("shape", [(0, 4), (4,), (2, 3, 4)])
def test_crop_features_refuses_what_is_not_crops_by_dims(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="crop outputs"):
        combine(np.zeros(shape, np.float32), EmbeddingRecipe(pooled_dim=4))


# ---- card validation ----------------------------------------------------------------------------------------
@pytest.fixture
def backbone(model_dir: Path) -> dict[str, Any]:
    """The (shared test model's) backbone spec as plain JSON, to vary."""
    d: dict[str, Any] = load_card(model_dir, verify_files=False).backbone.model_dump(mode="json")
    return d


def _with(backbone: dict[str, Any], embedding_dim: int, output_dim: int | None, sl: tuple[int, int] | None) -> dict:
    return {
        **backbone,
        "embedding_dim": embedding_dim,
        "output_dim": output_dim,
        "embedding": {**backbone["embedding"], "crop_features": sl},
    }


def test_backbone_dims_that_agree(backbone: dict[str, Any]) -> None:
    spec = BackboneSpec.model_validate(_with(backbone, 64, 200, (100, 164)))
    assert spec.crop_dim == 200 and spec.embedding_dim == 64
    spec = BackboneSpec.model_validate(_with(backbone, 64, None, None))
    assert spec.crop_dim == 64
    spec = BackboneSpec.model_validate(_with(backbone, 64, None, (0, 64)))
    assert spec.crop_dim == 64
    spec = BackboneSpec.model_validate(_with(backbone, 80, 80, None))
    assert spec.crop_dim == 80


@pytest.mark.parametrize(
    ("embedding_dim", "output_dim", "sl", "message"),
    [
        (64, 200, (0, 63), "embedding_dim"),  # the slice keeps 63, the card says 64
        (64, 200, None, "embedding_dim"),  # all 200 kept, the card says 64
        (64, None, (10, 74), "not a slice"),  # beyond the 64-d crop output
        (64, 200, (150, 214), "not a slice"),
        (64, 200, (-1, 63), "not a slice"),
        (64, 200, (5, 5), "not a slice"),  # empty
        (64, 200, (70, 6), "not a slice"),  # backwards
    ],
)
def test_backbone_dims_that_disagree_are_refused(
    backbone: dict[str, Any], embedding_dim: int, output_dim: int | None, sl: tuple[int, int] | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        BackboneSpec.model_validate(_with(backbone, embedding_dim, output_dim, sl))


@pytest.mark.parametrize("bad", [(0, 1), (1, 0), (9, 1), (1, 9), (0, 0), (9, 9), (-1, 2)])
def test_grids_outside_one_to_eight_are_refused(bad: tuple[int, int]) -> None:
    with pytest.raises(ValidationError, match="grid"):
        Preprocessing.model_validate({**P.model_dump(mode="json"), "grid": list(bad)})


@pytest.mark.parametrize("ok", [(1, 1), (8, 8), (1, 8), (4, 4), (2, 3)])
def test_grids_within_one_to_eight_count_their_crops(ok: tuple[int, int]) -> None:
    p = Preprocessing.model_validate({**P.model_dump(mode="json"), "grid": list(ok)})
    assert p.grid == ok and p.n_crops == ok[0] * ok[1]


_PART = {"file": "p.onnx", "input_names": ["embedding"], "output_name": "projection", "output_dim": 8}
_COMP = {"file": "c.onnx", "input_names": ["projection_a", "projection_b"], "output_name": "probability"}
_COSINE = {"dim": 8, "power": -0.5, "fitted_on": "train folds", "slope": 10.0, "bias": -5.0}


def _head(**parts: Any) -> dict[str, Any]:
    return {
        "kind": "cosine",
        "file": "head.onnx",
        "input_names": ["embedding_a", "embedding_b"],
        "output_name": "probability",
        "params": 0,
        **parts,
    }


def test_a_cosine_head_needs_its_spec_and_its_projection() -> None:
    head = HeadSpec.model_validate(_head(projection=_PART, comparator=_COMP, cosine=_COSINE))
    assert head.kind == "cosine" and head.cosine is not None and head.cosine.dim == 8
    with pytest.raises(ValidationError, match="cosine"):
        HeadSpec.model_validate(_head(projection=_PART, comparator=_COMP))  # no cosine spec
    with pytest.raises(ValidationError, match="cosine"):
        HeadSpec.model_validate(_head(cosine=_COSINE))  # no projection / comparator
    with pytest.raises(ValidationError, match="together"):
        HeadSpec.model_validate(_head(projection=_PART, cosine=_COSINE))  # projection without comparator
    with pytest.raises(ValidationError):
        HeadSpec.model_validate(_head(projection=_PART, comparator=_COMP, cosine={**_COSINE, "dim": 0}))


def test_old_cards_without_the_new_fields_load_as_one_centre_crop(tmp_path: Path) -> None:
    # a card written before the multi-crop fields existed: the dev model's (single crop, symmetric head)
    from bench.devmodel import build_dev_model

    old = build_dev_model(tmp_path / "dev")
    raw = json.loads((old / CARD_FILE).read_text())
    bb = raw["backbone"]
    bb.pop("output_dim", None)
    bb["preprocessing"].pop("grid", None)
    bb["embedding"].pop("crop_features", None)
    bb["embedding"].pop("combine", None)
    raw["head"].pop("cosine", None)
    (tmp_path / CARD_FILE).write_text(json.dumps(raw))
    card = load_card(tmp_path, verify_files=False)
    assert isinstance(card, Card)
    assert card.backbone.preprocessing.grid == (1, 1) and card.backbone.preprocessing.n_crops == 1
    assert card.backbone.embedding.crop_features is None and card.backbone.embedding.combine == "mean"
    assert card.backbone.output_dim is None and card.backbone.crop_dim == card.backbone.embedding_dim


def test_the_shipped_or_dev_card_still_loads(model_dir: Path) -> None:
    card = load_card(model_dir)  # files verified too
    p = card.backbone.preprocessing
    assert 1 <= p.grid[0] <= 8 and 1 <= p.grid[1] <= 8
    raw = json.loads((model_dir / CARD_FILE).read_text())
    if "grid" not in raw["backbone"]["preprocessing"]:
        assert p.grid == (1, 1)
