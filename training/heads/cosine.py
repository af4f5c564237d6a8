"""The `cosine` head: calibrated cosine similarity of whitened embeddings — no trained pair weights.

An embedding (the card's image-level embedding: crop features L2-normalised and averaged) is centred,
projected onto its top principal directions and scaled by eigenvalue**power (PCA whitening; power −0.5 is
full whitening), then L2-normalised: that is the head's *projection*, the reference vector the service
stores and searches. Two projections compare by their dot product (a cosine), mapped to a same-artist
probability by a logistic calibration `sigmoid(slope * cosine + bias)` fitted on artist-disjoint
out-of-fold pairs. The map is monotone: it changes no AUC, only what a score means.

Whitening is unsupervised: it may be fitted on any real paintings, labels unused. Evaluation still keeps
the works it was fitted on apart (training/evaluation/realeval.py). Exported with onnx.helper (no TensorFlow), as
the three files every head has: pair head, projection, comparator. Covered by tests/training/test_cosine.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.backbone.onnxgraph import init as _init
from training.backbone.onnxgraph import save_projection_head

DEFAULT_DIM = 64
DEFAULT_POWER = -0.5
_EPS = 1e-6


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # [D]
    matrix: np.ndarray  # [D, K]: principal directions scaled by eigenvalue**power
    power: float
    fitted_on: int  # vectors it was fitted on

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


@dataclass(frozen=True)
class CosineHead:
    whitening: Whitening
    slope: float  # logistic calibration of the cosine
    bias: float

    def project(self, emb: np.ndarray) -> np.ndarray:
        """[N, D] embeddings → [N, K] unit reference vectors (what head_projection.onnx computes)."""
        x = (np.asarray(emb, np.float64) - self.whitening.mean) @ self.whitening.matrix
        return l2(x).astype(np.float32)

    def probability(self, cosine: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(cosine, np.float64) + self.bias)

    def compare(self, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        """Row-wise pair probability of two [N, K] projection matrices (what head_comparator.onnx computes)."""
        return self.probability(np.sum(np.asarray(pa, np.float64) * np.asarray(pb, np.float64), axis=1))


def l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def fit_whitening(vectors: np.ndarray, dim: int = DEFAULT_DIM, power: float = DEFAULT_POWER) -> Whitening:
    """PCA whitening from [M, D] vectors (crops or images of real paintings; no labels)."""
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("whitening needs a [M, D] matrix with M >= 2")
    dim = min(dim, x.shape[1], len(x) - 1)
    mean = x.mean(axis=0)
    cov = np.cov((x - mean).T)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:dim]
    matrix = evecs[:, order] * np.power(np.maximum(evals[order], 0.0) + _EPS, power)
    # a fixed sign per direction, so refits on the same data give the same file
    signs = np.sign(matrix[np.argmax(np.abs(matrix), axis=0), np.arange(matrix.shape[1])])
    return Whitening(mean=mean, matrix=matrix * signs, power=float(power), fitted_on=int(len(x)))


@dataclass(frozen=True)
class Principal:
    """The principal subspace of a set of vectors: their mean, the top directions [D, P] and variances [P]."""

    mean: np.ndarray
    basis: np.ndarray
    variance: np.ndarray
    fitted_on: int


def principal(vectors: np.ndarray, subspace: int = 256) -> Principal:
    """Top `subspace` principal directions of [M, D] vectors (an SVD of the centred vectors: cheaper than the
    D x D covariance when M < D, and reusable by every `fit_robust` on the same vectors)."""
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("a principal subspace needs a [M, D] matrix with M >= 2")
    mean = x.mean(axis=0)
    xc = x - mean
    # the eigenvectors of the smaller of the two Gram matrices (M x M or D x D) give the same directions
    if len(x) < x.shape[1]:
        evals, u = np.linalg.eigh(xc @ xc.T)
        order = np.argsort(evals)[::-1]
        evals, u = np.maximum(evals[order], 0.0), u[:, order]
        keep = int(min(subspace, np.sum(evals > evals[0] * 1e-12), len(x) - 1))
        basis = xc.T @ u[:, :keep] / np.sqrt(evals[:keep])
    else:
        evals, v = np.linalg.eigh(xc.T @ xc)
        order = np.argsort(evals)[::-1]
        evals, v = np.maximum(evals[order], 0.0), v[:, order]
        keep = int(min(subspace, np.sum(evals > evals[0] * 1e-12), len(x) - 1))
        basis = v[:, :keep]
    return Principal(mean, basis, evals[:keep] / (len(x) - 1), int(len(x)))


def fit_robust(
    vectors: np.ndarray | Principal,
    nuisance: np.ndarray,
    dim: int = DEFAULT_DIM,
    power: float = DEFAULT_POWER,
    shrink: float = 0.1,
    subspace: int = 256,
) -> Whitening:
    """A whitening that ignores the camera: directions where paintings differ a lot and copies of one painting
    under different acquisition conditions differ little.

    `vectors` [M, D]: crops (or embeddings) of real paintings as published, no labels; `nuisance` [K, D]: for
    copies of those paintings under acquisition conditions, the copy's embedding minus the published one's —
    uncentred, so a condition's systematic shift (every JPEG-40 copy moving the same way) counts as nuisance too.
    In the top `subspace` principal directions of `vectors`, solve the generalised eigenproblem
    S_total v = λ S_nuisance v (LDA with "same painting" as the class; the nuisance covariance shrunk by
    `shrink` towards its mean eigenvalue, since K is small), keep the `dim` directions of highest λ (each with
    unit nuisance variance) and scale them by λ**power: −0.5 gives the published paintings unit variance in every
    direction, as `fit_whitening` does; 0 keeps each direction weighed by how far it stands above the nuisance.
    One linear map: exported and served exactly as the whitening."""
    pca = vectors if isinstance(vectors, Principal) else principal(vectors, subspace)
    d = np.asarray(nuisance, np.float64)
    if d.ndim != 2 or d.shape[1] != pca.mean.shape[0] or len(d) < 2:
        raise ValueError("robust whitening needs [K, D] nuisance differences, K >= 2")
    dp = d @ pca.basis[:, :subspace]
    return robust_from(pca, dp.T @ dp / len(dp), dim=dim, power=power, shrink=shrink)


def robust_from(
    pca: Principal, noise: np.ndarray, dim: int = DEFAULT_DIM, power: float = DEFAULT_POWER, shrink: float = 0.1
) -> Whitening:
    """`fit_robust` from the nuisance's second moment already taken in the first P directions of `pca`
    ([P, P], uncentred): sums of per-condition moments give any mix of conditions without revisiting vectors."""
    from scipy.linalg import cholesky, solve_triangular

    keep = noise.shape[0]
    mean, basis = pca.mean, pca.basis[:, :keep]
    total = np.diag(pca.variance[:keep])
    noise = (1 - shrink) * noise + shrink * np.trace(noise) / keep * np.eye(keep)
    # generalised eigenproblem total v = λ noise v through the Cholesky factor of noise (v' noise v = 1)
    chol = cholesky(noise, lower=True)
    inv = solve_triangular(chol, np.eye(keep), lower=True)
    evals, u = np.linalg.eigh(inv @ total @ inv.T)
    evecs = inv.T @ u
    order = np.argsort(evals)[::-1][: min(dim, keep)]
    lam = np.maximum(evals[order], _EPS)
    matrix = basis @ (evecs[:, order] * np.power(lam, power))
    signs = np.sign(matrix[np.argmax(np.abs(matrix), axis=0), np.arange(matrix.shape[1])])
    return Whitening(mean=mean, matrix=matrix * signs, power=float(power), fitted_on=pca.fitted_on)


def fit_calibration(cosines: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Logistic map cosine → P(same artist), fitted on out-of-fold pairs with balanced class weights
    (so 0.5 sits between the two classes however rare same-artist pairs are in the sample)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(same).astype(int)
    if y.min() == y.max():
        raise ValueError("calibration needs both same-artist and different-artist pairs")
    lr = LogisticRegression(class_weight="balanced", C=1e4, max_iter=1000)
    lr.fit(np.asarray(cosines, np.float64).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


# ------------------------------------------------------------------------------------------------ export


def _project_nodes(src: str, dst: str, tag: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sub", [src, "white_mean"], [f"{tag}_c"]),
        helper.make_node("MatMul", [f"{tag}_c", "white_matrix"], [f"{tag}_w"]),
        helper.make_node("LpNormalization", [f"{tag}_w"], [dst], axis=1, p=2),
    ]


def _compare_nodes(pa: str, pb: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Mul", [pa, pb], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "axis1"], ["cosine"], keepdims=0),
        helper.make_node("Mul", ["cosine", "cal_slope"], ["scaled"]),
        helper.make_node("Add", ["scaled", "cal_bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]


def export(head: CosineHead, out_dir: Path) -> dict[str, str]:
    """Write head.onnx, head_projection.onnx, head_comparator.onnx; returns kind → file name."""
    out_dir = Path(out_dir)
    d, k = head.whitening.matrix.shape
    white = [_init("white_mean", head.whitening.mean), _init("white_matrix", head.whitening.matrix)]
    cal = [
        _init("cal_slope", np.array([head.slope])),
        _init("cal_bias", np.array([head.bias])),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    return save_projection_head(out_dir, _project_nodes, _compare_nodes, (d, k), white, cal)
