"""training/heads/trained.py: the seed head's size, exact symmetry, and the symmetric head's factorisation."""

from __future__ import annotations

import numpy as np
import pytest

from training.heads.trained import SEED_WIDTHS, build_head

rng = np.random.default_rng(0)
A = rng.normal(size=(7, 12)).astype(np.float32)
B = rng.normal(size=(7, 12)).astype(np.float32)


def _pair(model, a, b):
    return model.predict({"embedding_a": a, "embedding_b": b}, verbose=0)


def test_seed_head_is_the_original_size():
    head = build_head("seed", 1536)
    dense = [layer for layer in head.pair.get_layer("seed_mlp").layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [*SEED_WIDTHS, 2]  # 9 hidden + the 2-way softmax = 10 dense layers
    assert 18.5e6 < head.params < 19.5e6


def test_seed_pair_model_is_symmetric_and_outputs_vector():
    head = build_head("seed", 12, widths=(32, 16), mean=A.mean(0), std=A.std(0))
    p = _pair(head.pair, A, B)
    assert p.shape == (7,)
    np.testing.assert_allclose(p, _pair(head.pair, B, A), atol=1e-6)
    assert np.all((p >= 0) & (p <= 1))
    # the training model is the single-order network sharing the same weights
    single = _pair(head.train, A, B)
    np.testing.assert_allclose(p, (single + _pair(head.train, B, A)) / 2, atol=1e-6)
    assert not np.allclose(single, _pair(head.train, B, A))


def test_symmetric_head_factorises_into_projection_and_comparator():
    head = build_head("symmetric", 12, hidden=32, projection_dim=8, comparator_hidden=8)
    p = _pair(head.pair, A, B)
    assert p.shape == (7,)
    np.testing.assert_allclose(p, _pair(head.pair, B, A), atol=1e-6)
    pa, pb = head.projection.predict(A, verbose=0), head.projection.predict(B, verbose=0)
    assert pa.shape == (7, 8)
    np.testing.assert_allclose(np.linalg.norm(pa, axis=1), np.sqrt(8), rtol=1e-5)
    c = head.comparator.predict({"projection_a": pa, "projection_b": pb}, verbose=0)
    np.testing.assert_allclose(c, p, atol=1e-6)
    assert [t.name for t in head.pair.inputs] == ["embedding_a", "embedding_b"]
    assert head.fit_model is head.pair
    assert head.params < build_head("seed", 12).params


def test_standardisation_is_frozen_and_applied():
    mean, std = np.full(12, 3.0, np.float32), np.full(12, 2.0, np.float32)
    head = build_head("symmetric", 12, mean=mean, std=std)
    layer = head.projection.get_layer("standardise")
    assert not layer.trainable_weights
    np.testing.assert_allclose(np.asarray(layer(A * 2 + 3)), A, atol=1e-5)
    # a constant feature (std 0) is left unscaled instead of dividing by zero
    zero = build_head("symmetric", 12, mean=mean, std=np.zeros(12, np.float32))
    assert np.all(np.isfinite(zero.projection.predict(A, verbose=0)))


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown head kind"):
        build_head("siamese", 4)
