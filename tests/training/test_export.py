"""training/backbone/export.py: ONNX names and dynamic batch, parity checks that can fail, a card that loads."""

from __future__ import annotations

import keras
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from PIL import Image

from contract.card import CardError, EmbeddingRecipe, load_card
from training.backbone.backbones import EmbedderSpec, preprocessing_for
from training.backbone.export import (
    ParityError,
    check_parity,
    export_head,
    export_model,
    load_images,
    onnx_run,
    to_onnx,
)
from training.evaluation.evaluate import SplitScores, calibrate
from training.heads.trained import build_head

DIM = 10


def _tiny_embedder(size: int = 32):
    keras.utils.set_random_seed(0)
    x_in = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x_in)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(DIM, name="embedding")(x)
    spec = EmbedderSpec(
        arch="tiny",
        embedding_dim=DIM,
        recipe=EmbeddingRecipe(pooled_dim=DIM),
        preprocessing=preprocessing_for("efficientnet_lite2", size),
        weights="random",
    )
    return keras.Model(x_in, out), spec


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    paths = []
    for name in ("chelsea", "coffee", "astronaut"):
        p = d / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(p)
        paths.append(p)
    return paths


def _sess(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_to_onnx_names_and_dynamic_batch(tmp_path, images):
    model, spec = _tiny_embedder()
    path = to_onnx(model, {"image": (32, 32, 3)}, "embedding", tmp_path / "b.onnx")
    s = _sess(path)
    assert [i.name for i in s.get_inputs()] == ["image"]
    assert [o.name for o in s.get_outputs()] == ["embedding"]
    x = load_images(images, spec)
    for n in (1, 3):
        assert onnx_run(path, {"image": x[:n]}).shape == (n, DIM)
    assert check_parity(path, model.predict(x, verbose=0), {"image": x}) < 1e-4


def test_parity_failure_raises(tmp_path, images):
    model, spec = _tiny_embedder()
    path = to_onnx(model, {"image": (32, 32, 3)}, "embedding", tmp_path / "b.onnx")
    x = load_images(images, spec)
    want = model.predict(x, verbose=0)
    with pytest.raises(ParityError, match="differs"):
        check_parity(path, want + 1e-3, {"image": x})
    with pytest.raises(ParityError, match="shape"):
        check_parity(path, want[:, :3], {"image": x})


@pytest.mark.parametrize("kind", ["seed", "symmetric"])
def test_export_head(tmp_path, kind):
    emb = np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32)
    kw = {"widths": (16, 8)} if kind == "seed" else {"hidden": 16, "projection_dim": 8, "comparator_hidden": 4}
    head = build_head(kind, DIM, mean=emb.mean(0), std=emb.std(0), **kw)
    res = export_head(head, tmp_path, emb)
    s = _sess(tmp_path / "head.onnx")
    assert [i.name for i in s.get_inputs()] == ["embedding_a", "embedding_b"]
    assert [o.name for o in s.get_outputs()] == ["probability"]
    out = s.run(None, {"embedding_a": emb[:5], "embedding_b": emb[5:10]})[0]
    assert out.shape == (5,)
    assert res["head"]["max_abs_diff"] < 1e-4
    if kind == "symmetric":
        p = _sess(tmp_path / "head_projection.onnx")
        assert [i.name for i in p.get_inputs()] == ["embedding"] and p.get_outputs()[0].name == "projection"
        c = _sess(tmp_path / "head_comparator.onnx")
        assert [i.name for i in c.get_inputs()] == ["projection_a", "projection_b"]
        pa = p.run(None, {"embedding": emb[:5]})[0]
        pb = p.run(None, {"embedding": emb[5:10]})[0]
        np.testing.assert_allclose(c.run(None, {"projection_a": pa, "projection_b": pb})[0], out, atol=1e-5)
        assert res["projection"]["dim"] == 8
    else:
        assert not (tmp_path / "head_projection.onnx").exists()


def test_export_model_writes_a_card_that_loads(tmp_path, images):
    model, spec = _tiny_embedder()
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, DIM)).astype(np.float32)
    head = build_head("symmetric", DIM, hidden=16, projection_dim=8, comparator_hidden=4)
    y = np.array([0, 1] * 50, float)
    cal = calibrate(SplitScores("val", y, np.clip(y * 0.5 + rng.random(100) * 0.5, 0, 1)))
    out = tmp_path / "m"
    card = export_model(
        out, model, spec, head, cal, {"unseen": {"auc": 0.5}}, {"corpus": "x"}, images, emb, name="tiny"
    )
    loaded = load_card(out)
    assert loaded == card
    assert loaded.head.kind == "symmetric" and loaded.head.projection.output_dim == 8
    assert loaded.backbone.embedding_dim == DIM and loaded.backbone.input_name == "image"
    assert set(loaded.files) == {"backbone.onnx", "head.onnx", "head_projection.onnx", "head_comparator.onnx"}
    assert sorted(p.name for p in out.iterdir()) == sorted([*loaded.files, "model.json"])
    assert set(loaded.metrics["parity_max_abs_diff"]) == {"backbone", "head", "projection", "comparator"}
    (out / "head.onnx").write_bytes((out / "head.onnx").read_bytes() + b"\0")
    with pytest.raises(CardError, match="sha256"):
        load_card(out)
