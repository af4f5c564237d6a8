"""training/heads/cosine.py: PCA whitening, the projection, the logistic calibration and the three exported ONNX
files."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from training.heads.cosine import CosineHead, export, fit_calibration, fit_robust, fit_whitening, principal

D = 12


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """Correlated, anisotropic, off-centre vectors (whitening has something to undo)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(D, D)) * np.linspace(3.0, 0.2, D)[:, None]
    return rng.normal(size=(n, D)) @ mix + rng.normal(0, 5, D)


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def test_full_whitening_makes_the_fitted_covariance_the_identity():
    x = _vectors(400)
    w = fit_whitening(x, dim=8, power=-0.5)
    assert w.dim == 8 and w.matrix.shape == (D, 8) and w.fitted_on == 400 and w.power == -0.5
    np.testing.assert_allclose(w.mean, x.mean(0))
    z = (x - w.mean) @ w.matrix
    np.testing.assert_allclose(np.cov(z.T), np.eye(8), atol=1e-4)
    # power 0 only rotates: the variances stay those of the principal directions, largest first
    v = np.diag(np.cov(((x - x.mean(0)) @ fit_whitening(x, dim=8, power=0.0).matrix).T))
    assert np.all(np.diff(v) <= 1e-9) and v[0] > 2 * v[-1]


def test_dim_is_capped_by_the_samples_and_the_width():
    assert fit_whitening(_vectors(5), dim=64).dim == 4  # M - 1 directions carry variance
    assert fit_whitening(_vectors(100), dim=64).dim == D
    with pytest.raises(ValueError):
        fit_whitening(_vectors(1))
    with pytest.raises(ValueError):
        fit_whitening(np.zeros(D))


def test_signs_are_deterministic():
    x = _vectors(60)
    a, b = fit_whitening(x, dim=6), fit_whitening(x.copy(), dim=6)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    # each direction's largest entry is positive, whatever sign eigh returned
    assert np.all(a.matrix[np.argmax(np.abs(a.matrix), axis=0), np.arange(6)] > 0)


def test_projection_rows_are_unit_vectors():
    x = _vectors(80)
    head = CosineHead(fit_whitening(x, dim=6), slope=5.0, bias=-1.0)
    p = head.project(_vectors(20, seed=1))
    assert p.shape == (20, 6) and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-6)
    # compare is the calibrated dot product
    c = np.sum(p[:10].astype(np.float64) * p[10:], axis=1)
    np.testing.assert_allclose(head.compare(p[:10], p[10:]), 1 / (1 + np.exp(-(5.0 * c - 1.0))), atol=1e-6)


def test_calibration_rises_with_the_cosine_and_needs_both_classes():
    rng = np.random.default_rng(0)
    same = np.r_[np.ones(50, bool), np.zeros(400, bool)]
    cos = np.where(same, rng.normal(0.6, 0.15, len(same)), rng.normal(0.1, 0.15, len(same)))
    slope, bias = fit_calibration(cos, same)
    assert slope > 0
    head = CosineHead(fit_whitening(_vectors(20), dim=4), slope, bias)
    # balanced weights: 0.5 sits between the two classes despite 1 same-artist pair in 9
    boundary = -bias / slope
    assert 0.1 < boundary < 0.6
    assert head.probability(np.array([0.6]))[0] > 0.5 > head.probability(np.array([0.1]))[0]
    with pytest.raises(ValueError, match="both"):
        fit_calibration(cos, np.ones(len(cos), bool))
    with pytest.raises(ValueError, match="both"):
        fit_calibration(cos, np.zeros(len(cos), bool))


def test_export_matches_project_and_compare(tmp_path):
    head = CosineHead(fit_whitening(_vectors(100), dim=6), slope=7.5, bias=-2.0)
    files = export(head, tmp_path)
    assert files == {"pair": "head.onnx", "projection": "head_projection.onnx", "comparator": "head_comparator.onnx"}
    assert all((tmp_path / f).is_file() for f in files.values())

    a = _vectors(9, seed=3).astype(np.float32)
    b = _vectors(9, seed=4).astype(np.float32)
    projection = _session(tmp_path / files["projection"])
    comparator = _session(tmp_path / files["comparator"])
    pair = _session(tmp_path / files["pair"])

    pa = projection.run(None, {"embedding": a})[0]
    pb = projection.run(None, {"embedding": b})[0]
    np.testing.assert_allclose(pa, head.project(a), atol=1e-5)
    np.testing.assert_allclose(pb, head.project(b), atol=1e-5)

    cmp = comparator.run(None, {"projection_a": pa, "projection_b": pb})[0]
    assert cmp.shape == (9,)
    np.testing.assert_allclose(cmp, head.compare(pa, pb), atol=1e-5)

    ab = pair.run(None, {"embedding_a": a, "embedding_b": b})[0]
    ba = pair.run(None, {"embedding_a": b, "embedding_b": a})[0]
    assert ab.shape == (9,)
    np.testing.assert_allclose(ab, cmp, atol=1e-5)  # head.onnx = comparator(projection(a), projection(b))
    np.testing.assert_allclose(ab, ba, atol=1e-6)  # and is symmetric
    np.testing.assert_allclose(ab, head.compare(head.project(a), head.project(b)), atol=1e-5)
    assert np.ptp(ab) > 1e-3  # the pairs do not all score the same


def test_principal_subspace_matches_the_svd_either_way_round():
    for n in (8, 40):  # fewer and more vectors than dimensions
        x = _vectors(n, seed=2)
        p = principal(x, subspace=5)
        _, sv, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
        np.testing.assert_allclose(p.variance, sv[:5] ** 2 / (n - 1), rtol=1e-8)
        np.testing.assert_allclose(np.abs(np.sum(p.basis * vt[:5].T, axis=0)), 1.0, atol=1e-8)
        assert p.fitted_on == n


def test_robust_whitening_ignores_the_nuisance_direction():
    """Paintings differ along every axis; the camera moves them along axis 0 (a shift shared by every copy plus
    noise). Plain whitening keeps axis 0 as its strongest direction; the robust one leaves it out."""
    rng = np.random.default_rng(3)
    scales = np.linspace(2.0, 1.0, D)
    scales[0] = 3.0
    x = rng.normal(size=(300, D)) * scales
    shift = np.zeros(D)
    shift[0] = 2.0
    nuisance = shift + rng.normal(size=(300, D)) * np.where(np.arange(D) == 0, 1.0, 0.05)
    plain = fit_whitening(x, dim=4)
    robust = fit_robust(x, nuisance, dim=4, shrink=0.01)
    weight = lambda m: np.abs(m[0]) / np.linalg.norm(m, axis=0)  # noqa: E731  share of axis 0 per direction
    assert weight(plain.matrix).max() > 0.9
    assert weight(robust.matrix).max() < 0.1
    # a copy moved along the nuisance keeps its projection; under plain whitening it does not
    a = x[:50]
    b = a + nuisance[:50]
    self_cos = lambda w: np.sum(CosineHead(w, 1, 0).project(a) * CosineHead(w, 1, 0).project(b), 1).mean()  # noqa: E731
    assert self_cos(robust) > 0.98 > self_cos(plain)
    # power -0.5 whitens the paintings in the kept directions, as plain whitening does
    z = (x - robust.mean) @ robust.matrix
    np.testing.assert_allclose(np.diag(np.cov(z.T)), 1.0, rtol=0.05)
    with pytest.raises(ValueError):
        fit_robust(x, nuisance[:1])
