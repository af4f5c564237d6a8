"""The models under models/ as shipped: each directory's card seals its files and the service loads it and runs the
recipe its card states; together they stay under the size budget; and `make run`'s default for each accelerator is
one of them (models/fast on CPU, models/default on GPU)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract.card import load_card
from service.serving.model import Model, SessionConfig

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
SHIPPED = sorted(p.parent for p in MODELS.glob("*/model.json"))
BUDGET_BYTES = 40 * 1000 * 1000  # the brief: model artifacts under models/ stay below 40 MB in all


def test_the_shipped_models_are_default_and_fast():
    assert [p.name for p in SHIPPED] == ["default", "fast"]


def test_models_stay_within_the_size_budget():
    total = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert total < BUDGET_BYTES, f"models/ holds {total / 1e6:.1f} MB"


@pytest.mark.parametrize("model_dir", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_model_loads_and_embeds_as_its_card_says(model_dir: Path):
    card = load_card(model_dir, verify_files=True)  # every ONNX file's sha256 as sealed
    model = Model.load(model_dir, providers="cpu")
    p = card.backbone.preprocessing
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (500, 700, 3), np.uint8))
    inputs = model.model_inputs(picture)
    assert inputs.shape == (p.grid[0] * p.grid[1], *p.crop, 3)
    (emb,) = model.embed_pictures([inputs])
    assert emb.shape == (card.backbone.embedding_dim,) and np.isfinite(emb).all()
    # the card's own measurements travel with it: the REPORT that states them, and the judged conditions
    assert (model_dir / "REPORT.md").is_file() and card.model_id in (model_dir / "REPORT.md").read_text()
    assert card.metrics["robustness"]["judged"]


@pytest.mark.parametrize("model_dir", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_model_fed_uint8_crops_gives_the_same_bits(model_dir: Path):
    """`backbone_input=uint8` (the service's choice on CUDA): the card's normalisation inside the graph changes no
    output of the shipped backbones, int8 and fp32."""
    plain = Model.load(model_dir, providers="cpu")
    u8 = Model.load(model_dir, providers="cpu", session=SessionConfig(backbone_input="uint8"))
    rng = np.random.default_rng(1)
    pictures = [Image.fromarray(rng.integers(0, 256, (420 + 40 * i, 600, 3), np.uint8)) for i in range(2)]
    pictures.append(Image.effect_mandelbrot((640, 480), (-2.0, -1.2, 1.0, 1.2), 80).convert("RGB"))
    want = plain.crop_vectors([plain.model_inputs(p) for p in pictures])
    got = u8.crop_vectors([u8.model_inputs(p) for p in pictures])
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_the_fast_model_is_the_default_recipe_on_fewer_pixels():
    default, fast = load_card(MODELS / "default"), load_card(MODELS / "fast")
    d, f = default.backbone.preprocessing, fast.backbone.preprocessing
    assert f.grid == d.grid and f.crop[0] < d.crop[0]
    # the same part of the picture per crop: crop ÷ working size equal
    assert f.crop[0] / f.resize_shorter == pytest.approx(d.crop[0] / d.resize_shorter)
    assert default.backbone.arch == fast.backbone.arch and "int8" in fast.backbone.weights


@pytest.mark.parametrize(("accel", "expected"), [("cpu", "models/fast"), ("gpu", "models/default")])
def test_make_run_serves_the_fast_model_on_cpu_and_the_fp32_one_on_gpu(accel: str, expected: str):
    out = subprocess.run(
        ["make", "-n", "run", f"ACCEL={accel}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert re.search(rf"BRUSHPRINT_MODEL_DIR={re.escape(expected)}\s", out), out
