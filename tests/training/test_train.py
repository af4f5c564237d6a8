"""training/heads/train.py: learns from clustered embeddings, keeps the best val-AUC epoch, is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.pairs import fixed_pairs, pair_inputs
from training.heads.train import embedding_stats, load_head, train_head
from training.settings import TrainConfig


def _clusters(n_artists: int, per: int, dim: int, seed: int, offset: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_artists, dim)) * 3 + 5  # far from zero mean: standardisation matters
    labels = np.repeat(np.arange(n_artists), per)
    emb = centres[labels] * 0.35 + rng.normal(size=(len(labels), dim))
    return emb.astype(np.float32), labels + offset


TRAIN = _clusters(30, 8, 16, seed=0)
VAL = _clusters(10, 8, 16, seed=1, offset=100)
CONFIG = TrainConfig(epochs=6, pairs_per_epoch=2048, batch_size=128, val_pairs=512, patience=3)


@pytest.fixture(scope="module")
def symmetric(tmp_path_factory):
    return train_head("symmetric", *TRAIN, *VAL, CONFIG, checkpoint_dir=tmp_path_factory.mktemp("ckpt"))


def test_learns_unseen_artists(symmetric):
    assert symmetric.best_val_auc > 0.75  # chance is 0.5
    assert set(symmetric.history) >= {"loss", "auc", "val_loss", "val_auc"}
    assert symmetric.summary()["params"] == symmetric.head.params


def test_best_epoch_is_restored(symmetric):
    va, vb, vy = fixed_pairs(VAL[1], CONFIG.val_pairs, seed=CONFIG.seed + 1)
    model = symmetric.head.fit_model
    got = model.evaluate(pair_inputs(VAL[0], va, vb), vy, batch_size=1024, verbose=0, return_dict=True)
    assert got["auc"] == pytest.approx(max(symmetric.history["val_auc"]), abs=1e-4)
    assert symmetric.best_epoch == int(np.argmax(symmetric.history["val_auc"])) + 1


def test_checkpoint_reloads_the_same_head(symmetric):
    head = load_head("symmetric", 16, symmetric.checkpoint)
    x = pair_inputs(VAL[0], np.arange(10), np.arange(10, 20))
    np.testing.assert_allclose(head.pair.predict(x, verbose=0), symmetric.head.pair.predict(x, verbose=0), atol=1e-6)
    # the frozen standardisation travelled with the weights
    mean, _ = embedding_stats(TRAIN[0])
    np.testing.assert_allclose(head.projection.get_layer("standardise").mean.numpy(), mean, rtol=1e-5)


def test_reproducible_with_fixed_seed():
    cfg = TrainConfig(
        epochs=2, pairs_per_epoch=512, batch_size=128, val_pairs=256, head_kwargs={"seed": {"widths": (16, 8)}}
    )
    h1 = train_head("seed", *TRAIN, *VAL, cfg).history
    h2 = train_head("seed", *TRAIN, *VAL, cfg).history
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)
    np.testing.assert_allclose(h1["val_auc"], h2["val_auc"], rtol=1e-5)


def test_early_stopping_stops():
    cfg = TrainConfig(epochs=30, pairs_per_epoch=256, batch_size=128, val_pairs=256, patience=1, learning_rate=1e-9)
    result = train_head("symmetric", *TRAIN, *VAL, cfg)
    assert len(result.history["loss"]) < 30
