"""Fit a pair head on cached embeddings: fresh balanced pairs per epoch, fixed validation pairs.

Early stopping watches validation ROC AUC (`keras.metrics.AUC`); the best epoch's weights are kept in a
checkpoint and restored at the end whether or not early stopping fired. Seeds are fixed so a rerun gives
the same head. Covered by tests/training/test_train.py.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training.data.pairs import PairDataset, PairSampler, fixed_pairs, pair_inputs
from training.heads.trained import HeadModels, build_head
from training.settings import TrainConfig


@dataclass
class TrainResult:
    kind: str
    head: HeadModels
    history: dict[str, list[float]]
    best_epoch: int
    best_val_auc: float
    seconds: float
    checkpoint: Path | None

    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "params": self.head.params,
            "epochs_run": len(self.history.get("loss", [])),
            "best_epoch": self.best_epoch,
            "best_val_auc": self.best_val_auc,
            "seconds": round(self.seconds, 1),
        }


# Adam's default 1e-3 makes the 19M-parameter seed head overfit within an epoch or two.
_DEFAULT_LR = {"seed": 1e-4, "symmetric": 1e-3}


def embedding_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean/std of the training embeddings, frozen into the head's first layer."""
    e = np.asarray(embeddings, np.float64)
    return e.mean(axis=0).astype(np.float32), e.std(axis=0).astype(np.float32)


def train_head(
    kind: str,
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    val_embeddings: np.ndarray,
    val_labels: np.ndarray,
    config: TrainConfig | None = None,
    checkpoint_dir: Path | None = None,
    verbose: int = 0,
) -> TrainResult:
    """Train one head kind; returns it with the best validation-AUC weights restored."""
    config = config or TrainConfig()
    keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    dim = int(train_embeddings.shape[1])
    mean, std = embedding_stats(train_embeddings)
    head = build_head(kind, dim, mean=mean, std=std, **config.head_kwargs.get(kind, {}))
    model = head.fit_model
    lr = config.learning_rate or _DEFAULT_LR[kind]
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )

    data = PairDataset(
        train_embeddings, PairSampler(train_labels, seed=config.seed), config.pairs_per_epoch, config.batch_size
    )
    va, vb, vy = fixed_pairs(val_labels, config.val_pairs, seed=config.seed + 1)
    val_data = (pair_inputs(np.asarray(val_embeddings, np.float32), va, vb), vy)

    tmp = None
    if checkpoint_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="brushprint-ckpt-")
        checkpoint_dir = Path(tmp.name)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_dir / f"{kind}.best.weights.h5"
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            ckpt, monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True, verbose=0
        ),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience, verbose=0),
    ]
    fit = model.fit(
        data,
        validation_data=val_data,
        validation_batch_size=1024,
        epochs=config.epochs_by_kind.get(kind, config.epochs),
        callbacks=callbacks,
        verbose=verbose,
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    model.load_weights(ckpt)
    best = int(np.argmax(history["val_auc"]))
    result = TrainResult(
        kind=kind,
        head=head,
        history=history,
        best_epoch=best + 1,
        best_val_auc=float(history["val_auc"][best]),
        seconds=time.perf_counter() - start,
        checkpoint=None if tmp else ckpt,
    )
    if tmp is not None:
        tmp.cleanup()
    return result


def load_head(kind: str, dim: int, checkpoint: Path, head_kwargs: dict | None = None) -> HeadModels:
    """Rebuild a head and load its best checkpoint (statistics live in the weights file)."""
    head = build_head(kind, dim, **(head_kwargs or {}).get(kind, {}))
    head.fit_model.load_weights(checkpoint)
    return head
