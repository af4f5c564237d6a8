"""Shared fixtures for the service tests: a real ONNX model and small deterministic test pictures.

`model_dir` is the shipped model with a single centre crop (bench/devmodel.py `single_crop_copy`: the same ONNX
files, backbone and cosine head) — the serving path the shipped model takes at a sixteenth of its backbone work
— or the dev model when no model is shipped. `shipped_model_dir` is models/default as it is, multi-crop recipe
included (tests/service/test_shipped_model.py, the browser tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.devmodel import build_dev_model, single_crop_copy
from service.model import Model

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "default"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (SHIPPED / "model.json").is_file():
        return single_crop_copy(SHIPPED, tmp_path_factory.mktemp("shipped-1crop"))
    return build_dev_model(tmp_path_factory.mktemp("devmodel"))


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    assert (SHIPPED / "model.json").is_file(), "models/default is the shipped model"
    return SHIPPED


@pytest.fixture(scope="session")
def model(model_dir: Path) -> Model:
    return Model.load(model_dir, providers="cpu")


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A second, different model (other weights → other model id) for model-change tests."""
    return Model.load(build_dev_model(tmp_path_factory.mktemp("othermodel"), seed=7, version="other"), "cpu")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def painting(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small deterministic RGB picture: a seed-dependent palette gradient with strokes of noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-3, 3, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1] + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    return encode(painting(seed, size), "PNG")
