"""Embedding extraction: same numbers as the model on preprocessed images, cache hits, resume after a crash."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from contract.card import EmbeddingRecipe, Preprocessing
from contract.recipe import preprocess
from training.backbone.embed import EmbeddingCache, cache_key, embed_manifest
from training.data.datasets import Item, Manifest

DIM = 8
PRE = Preprocessing(resize_shorter=24, crop=(24, 24), scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@dataclass(frozen=True)
class TinySpec:  # the fields of training.backbone.backbones.EmbedderSpec
    arch: str = "tiny"
    embedding_dim: int = DIM
    recipe: EmbeddingRecipe = EmbeddingRecipe(pooled_dim=DIM, description="test")
    preprocessing: Preprocessing = PRE
    weights: str | None = "random seed 0"


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(DIM)(x))


class Counting:
    """Wraps a model; counts batches and images; optionally dies after `fail_after` batches."""

    def __init__(self, model: keras.Model, fail_after: int | None = None) -> None:
        self.model, self.fail_after, self.batches, self.shapes = model, fail_after, 0, []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.batches += 1
        self.shapes.append(x.shape)
        return self.model.predict_on_batch(x)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return _tiny_model()


@pytest.fixture()
def corpus(tmp_path: Path) -> Manifest:
    rng = np.random.default_rng(0)
    items = []
    for i in range(7):
        w, h = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        items.append(Item(f"{i}.png", path, f"artist{i % 3}"))
    dup = tmp_path / "img" / "dup.png"
    shutil.copy(items[2].path, dup)  # same content, another file: one embedding
    items.append(Item("dup.png", dup, "artist2"))
    return Manifest(items)


def _direct(model: keras.Model, manifest: Manifest) -> np.ndarray:
    x = np.stack([preprocess(Image.open(it.path), PRE) for it in manifest])
    return np.asarray(model(x, training=False))


def test_embeddings_match_the_model_and_second_call_computes_nothing(
    model: keras.Model, corpus: Manifest, tmp_path: Path
) -> None:
    counting = Counting(model)
    e = embed_manifest(corpus, counting, TinySpec(), tmp_path / "cache", batch_size=3, progress=False)
    assert e.shape == (8, DIM) and e.dtype == np.float32
    np.testing.assert_allclose(e, _direct(model, corpus), rtol=1e-5, atol=1e-5)
    assert np.array_equal(e[2], e[7])
    assert counting.batches == 3  # 7 distinct images in batches of 3
    assert set(counting.shapes) == {(3, 24, 24, 3)}  # the last batch is padded to one shape

    again = Counting(model)
    e2 = embed_manifest(corpus, again, TinySpec(), tmp_path / "cache", batch_size=3, progress=True)
    assert again.batches == 0
    assert np.array_equal(e, e2)
    # a subset, in another order, comes straight from the cache
    sub = Manifest([corpus[5], corpus[0]])
    assert np.array_equal(embed_manifest(sub, again, TinySpec(), tmp_path / "cache", progress=False), e[[5, 0]])
    assert again.batches == 0


def test_interrupted_run_resumes(model: keras.Model, corpus: Manifest, tmp_path: Path) -> None:
    full = embed_manifest(corpus, Counting(model), TinySpec(), tmp_path / "full", batch_size=2, progress=False)
    dying = Counting(model, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        embed_manifest(corpus, dying, TinySpec(), tmp_path / "cache", batch_size=2, progress=False)
    cache = EmbeddingCache(tmp_path / "cache", TinySpec())
    assert len(cache) == 4  # two whole batches were kept
    assert not list(cache.shards.glob(".tmp-*"))

    resumed = Counting(model)
    e = embed_manifest(corpus, resumed, TinySpec(), tmp_path / "cache", batch_size=2, progress=False)
    assert resumed.batches == 2  # the 3 remaining distinct images
    np.testing.assert_allclose(e, full, rtol=1e-6, atol=1e-6)


def test_cache_is_keyed_by_backbone_identity(model: keras.Model, corpus: Manifest, tmp_path: Path) -> None:
    spec = TinySpec()
    other_weights = replace(spec, weights="another file")
    other_pre = replace(spec, preprocessing=PRE.model_copy(update={"resize_shorter": 30}))
    keys = {cache_key(s) for s in (spec, other_weights, other_pre, replace(spec, arch="tiny2"))}
    assert len(keys) == 4 and cache_key(TinySpec()) == cache_key(spec)

    embed_manifest(corpus, Counting(model), spec, tmp_path / "cache", progress=False)
    counting = Counting(model)
    embed_manifest(corpus, counting, other_weights, tmp_path / "cache", batch_size=4, progress=False)
    assert counting.batches == 2  # nothing reused across backbones


def test_plain_callable_model_and_wrong_dimension(model: keras.Model, corpus: Manifest, tmp_path: Path) -> None:
    e = embed_manifest(corpus, model.__call__, TinySpec(), tmp_path / "a", batch_size=4, progress=False)
    np.testing.assert_allclose(e, _direct(model, corpus), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        embed_manifest(corpus, model, replace(TinySpec(), embedding_dim=5), tmp_path / "b", progress=False)


def test_unreadable_image_is_named(model: keras.Model, corpus: Manifest, tmp_path: Path) -> None:
    bad = tmp_path / "img" / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="bad.png"):
        embed_manifest(Manifest([*corpus, Item("bad", bad, "x")]), model, TinySpec(), tmp_path / "c", progress=False)
