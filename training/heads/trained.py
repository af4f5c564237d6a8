"""Pair heads: two embeddings in, the probability that one artist made both out.

`seed` is the original work's head: concatenated embeddings → 9 hidden ReLU layers (2048, 2048, 2048, 1024,
1024, 512, 512, 256, 128) → 2-way softmax, i.e. 10 dense layers counting the softmax layer — the issue's
"10 dense layers" and its 9 widths are the same network (~19M parameters with 1536-d inputs). Concatenation
is order-dependent, so the exported `pair` model averages both orders: head(a, b) == head(b, a) exactly.

`symmetric` projects each embedding with one shared MLP onto the unit sphere and compares projections with
order-free features [|pa − pb|, pa ⊙ pb]. The projection of a reference work can be computed once and
stored; the small comparator then scores many pairs cheaply. comparator(projection(a), projection(b)) is
the pair model by construction.

Both standardise embeddings with fixed training-set mean/std inside the model (a non-trainable
`Normalization` layer), so the ONNX files need no extra preprocessing step. Covered by
tests/training/test_heads.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from contract.heads import TRAINED

KINDS = TRAINED  # the trained kinds of contract.heads (the one registry of head kinds)
SEED_WIDTHS = (2048, 2048, 2048, 1024, 1024, 512, 512, 256, 128)
INPUT_A, INPUT_B, OUTPUT = "embedding_a", "embedding_b", "probability"


@dataclass
class HeadModels:
    """`pair` is what gets exported as head.onnx; `train` is what `fit` optimises (shares its weights).

    For the seed head `train` is the single-order network (as the original trained it); for the
    symmetric head it is `pair` itself.
    """

    kind: str
    pair: keras.Model
    projection: keras.Model | None = None
    comparator: keras.Model | None = None
    train: keras.Model | None = None

    @property
    def fit_model(self) -> keras.Model:
        return self.train if self.train is not None else self.pair

    @property
    def params(self) -> int:
        return int(self.pair.count_params())


class Standardise(layers.Layer):
    """(x − mean) / std with fixed training-set statistics.

    Non-trainable weights rather than keras' `Normalization(mean=, variance=)`, whose constants are captured
    eager tensors that tf2onnx turns into extra graph inputs.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self._mean0 = np.asarray(mean, np.float32)
        # constant features (std 0) would divide by zero; leave them unscaled
        std = np.asarray(std, np.float32)
        self._inv0 = (1.0 / np.where(std > 1e-6, std, 1.0)).astype(np.float32)

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        self.mean = self.add_weight(
            shape=(dim,), initializer=keras.initializers.Constant(self._mean0), trainable=False, name="mean"
        )
        self.inv_std = self.add_weight(
            shape=(dim,), initializer=keras.initializers.Constant(self._inv0), trainable=False, name="inv_std"
        )

    def call(self, x):
        return (x - self.mean) * self.inv_std

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self._mean0.tolist(), "std": (1.0 / self._inv0).tolist()}


def _standardiser(dim: int, mean: np.ndarray | None, std: np.ndarray | None, name: str) -> layers.Layer:
    mean = np.zeros(dim, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(dim)
    std = np.ones(dim, np.float32) if std is None else np.asarray(std, np.float32).reshape(dim)
    return Standardise(mean, std, name=name)


def _pair_inputs(dim: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    return keras.Input((dim,), name=INPUT_A), keras.Input((dim,), name=INPUT_B)


def build_seed(
    dim: int,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    widths: tuple[int, ...] = SEED_WIDTHS,
    dropout: float = 0.0,
) -> HeadModels:
    norm = _standardiser(dim, mean, std, "standardise")
    x_in = keras.Input((2 * dim,), name="concat")
    x = x_in
    for i, w in enumerate(widths):
        x = layers.Dense(w, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    softmax = layers.Dense(2, activation="softmax", name="softmax")(x)
    mlp = keras.Model(x_in, softmax, name="seed_mlp")

    def same(a, b):
        # 2-way softmax as the original; column 1 = "same artist"
        return mlp(layers.Concatenate(name=None)([norm(a), norm(b)]))[:, 1]

    a, b = _pair_inputs(dim)
    train = keras.Model({INPUT_A: a, INPUT_B: b}, same(a, b), name="seed_train")
    a2, b2 = _pair_inputs(dim)
    both = (same(a2, b2) + same(b2, a2)) * 0.5
    pair = keras.Model({INPUT_A: a2, INPUT_B: b2}, both, name="seed_pair")
    return HeadModels("seed", pair=pair, train=train)


def build_symmetric(
    dim: int,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    hidden: int = 512,
    projection_dim: int = 256,
    comparator_hidden: int = 128,
    dropout: float = 0.3,
    input_dropout: float = 0.5,
    weight_decay: float = 0.0,
) -> HeadModels:
    e = keras.Input((dim,), name="embedding")
    x = _standardiser(dim, mean, std, "standardise")(e)
    if input_dropout:
        # a few hundred training artists are memorised within an epoch; dropping input features fights that
        x = layers.Dropout(input_dropout, name="input_dropout")(x)
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    x = layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="proj_hidden")(x)
    if dropout:
        x = layers.Dropout(dropout, name="proj_dropout")(x)
    x = layers.Dense(projection_dim, kernel_regularizer=reg, name="proj_out")(x)
    # unit length, then scaled so the comparator sees O(1) features whatever projection_dim is
    p = layers.UnitNormalization(name="l2")(x) * float(np.sqrt(projection_dim))
    projection = keras.Model(e, p, name="projection")

    pa = keras.Input((projection_dim,), name="projection_a")
    pb = keras.Input((projection_dim,), name="projection_b")
    f = layers.Concatenate(name="features")([ops.abs(pa - pb), pa * pb])
    h = layers.Dense(comparator_hidden, activation="relu", name="cmp_hidden")(f)
    prob = layers.Dense(1, activation="sigmoid", name="cmp_out")(h)[:, 0]
    comparator = keras.Model({"projection_a": pa, "projection_b": pb}, prob, name="comparator")

    a, b = _pair_inputs(dim)
    out = comparator({"projection_a": projection(a), "projection_b": projection(b)})
    pair = keras.Model({INPUT_A: a, INPUT_B: b}, out, name="symmetric_pair")
    return HeadModels("symmetric", pair=pair, projection=projection, comparator=comparator)


def build_head(kind: str, dim: int, **kw) -> HeadModels:
    """`kind` in KINDS; `mean`/`std` (training-set embedding statistics) and per-kind sizes as keywords."""
    if kind == "seed":
        return build_seed(dim, **kw)
    if kind == "symmetric":
        return build_symmetric(dim, **kw)
    raise ValueError(f"unknown head kind {kind!r}; choose from {KINDS}")
