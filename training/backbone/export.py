"""Keras → ONNX (tf2onnx, opset 17, dynamic batch), parity checks, and the model card.

Every exported graph is run with onnxruntime (CPU) against its Keras original on real inputs — corpus
images decoded and prepared by the contract (`training.backbone.embed.load_input`) for the backbone, real embeddings
for the head — and export fails if they differ by more than `PARITY_TOL`. The model directory ends up holding
only what the service needs: the ONNX files, `model.json` (with a sha256 per file), REPORT.md and plots.
Covered by tests/training/test_export.py and tests/training/test_e2e.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from contract.card import BackboneSpec, Calibration, Card, HeadSpec, OnnxPart, seal_card
from training.backbone.embed import load_input
from training.heads.trained import INPUT_A, INPUT_B, OUTPUT, HeadModels

OPSET = 17
PARITY_TOL = 1e-4
BACKBONE_FILE, HEAD_FILE = "backbone.onnx", "head.onnx"
PROJECTION_FILE, COMPARATOR_FILE = "head_projection.onnx", "head_comparator.onnx"


class ParityError(RuntimeError):
    """ONNX and Keras disagree beyond tolerance: the export must not ship."""


def to_onnx(model: keras.Model, inputs: dict[str, tuple], output_name: str, path: Path, opset: int = OPSET) -> Path:
    """Convert `model` with named float32 inputs (shapes without the batch axis) and one named output.

    Goes through a `tf.function` rather than `from_keras`: the input names, dynamic batch axis and the
    output name are then exactly the ones given, whatever Keras named its layers.
    """
    names = list(inputs)
    signature = [tf.TensorSpec((None, *shape), tf.float32, name=n) for n, shape in inputs.items()]

    def call(*args):
        x = args[0] if len(args) == 1 else dict(zip(names, args, strict=True))
        return {output_name: model(x, training=False)}

    fn = tf.function(call, input_signature=signature)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset, output_path=str(path))
    return path


def onnx_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})[0]


def check_parity(path: Path, keras_out: np.ndarray, feeds: dict[str, np.ndarray], tol: float = PARITY_TOL) -> float:
    """Max abs difference ONNX vs Keras; raises ParityError above `tol` or on a shape mismatch."""
    got = onnx_run(path, feeds)
    want = np.asarray(keras_out)
    if got.shape != want.shape:
        raise ParityError(f"{Path(path).name}: ONNX output shape {got.shape} != Keras {want.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    if not diff < tol:
        raise ParityError(f"{Path(path).name}: ONNX differs from Keras by {diff:.3g} (tolerance {tol:g})")
    return diff


def load_images(paths: Sequence[Path], spec) -> np.ndarray:
    """Real corpus images → the backbone's input batch, exactly as the embedding cache prepares them."""
    return np.concatenate([load_input(p, spec) for p in paths])  # every crop of every picture


def export_backbone(embedder: keras.Model, spec, out_dir: Path, parity_images: Sequence[Path]) -> dict:
    size = tuple(int(d) for d in embedder.input_shape[1:])
    path = to_onnx(embedder, {"image": size}, "embedding", Path(out_dir) / BACKBONE_FILE)
    x = load_images(parity_images, spec)
    diff = check_parity(path, embedder.predict(x, verbose=0), {"image": x})
    return {"file": path.name, "max_abs_diff": diff, "images": len(x)}


def backbone_spec(spec) -> BackboneSpec:
    """The card's description of the backbone ONNX that `export_backbone` writes for an `EmbedderSpec`."""
    return BackboneSpec(
        file=BACKBONE_FILE,
        arch=spec.arch,
        input_name="image",
        output_name="embedding",
        embedding_dim=spec.embedding_dim,
        embedding=spec.recipe,
        preprocessing=spec.preprocessing,
        weights=spec.weights,
    )


def export_head(head: HeadModels, out_dir: Path, embeddings: np.ndarray, n_pairs: int = 64, seed: int = 0) -> dict:
    """head.onnx (+ projection/comparator for symmetric heads), each checked on real embedding pairs."""
    out_dir = Path(out_dir)
    emb = np.asarray(embeddings, np.float32)
    dim = emb.shape[1]
    rng = np.random.default_rng(seed)
    ia, ib = rng.integers(len(emb), size=n_pairs), rng.integers(len(emb), size=n_pairs)
    feeds = {INPUT_A: emb[ia], INPUT_B: emb[ib]}
    path = to_onnx(head.pair, {INPUT_A: (dim,), INPUT_B: (dim,)}, OUTPUT, out_dir / HEAD_FILE)
    want = head.pair.predict(feeds, verbose=0)
    result = {"head": {"file": path.name, "max_abs_diff": check_parity(path, want, feeds)}}
    swapped = onnx_run(path, {INPUT_A: emb[ib], INPUT_B: emb[ia]})
    if float(np.max(np.abs(swapped - onnx_run(path, feeds)))) > PARITY_TOL:
        raise ParityError("head.onnx is not symmetric: head(a, b) != head(b, a)")

    if head.projection is not None and head.comparator is not None:
        proj_dim = int(head.projection.output_shape[-1])
        ppath = to_onnx(head.projection, {"embedding": (dim,)}, "projection", out_dir / PROJECTION_FILE)
        cpath = to_onnx(
            head.comparator,
            {"projection_a": (proj_dim,), "projection_b": (proj_dim,)},
            OUTPUT,
            out_dir / COMPARATOR_FILE,
        )
        proj = head.projection.predict(emb, verbose=0)
        result["projection"] = {
            "file": ppath.name,
            "max_abs_diff": check_parity(ppath, proj, {"embedding": emb}),
            "dim": proj_dim,
        }
        pfeeds = {
            "projection_a": onnx_run(ppath, {"embedding": emb[ia]}),
            "projection_b": onnx_run(ppath, {"embedding": emb[ib]}),
        }
        # the service's fast path (project once, compare many) must give what head.onnx gives
        result["comparator"] = {"file": cpath.name, "max_abs_diff": check_parity(cpath, want, pfeeds)}
    return result


def build_card(
    name: str,
    version: str,
    spec,
    head: HeadModels,
    parity: dict,
    calibration: Calibration,
    metrics: dict,
    training_data: dict,
    out_dir: Path,
) -> Card:
    """The card for the files already in `out_dir` (unsealed: `contract.card.seal_card` records their sha256)."""
    out_dir = Path(out_dir)
    projection = comparator = None
    if "projection" in parity:
        projection = OnnxPart(
            file=PROJECTION_FILE,
            input_names=["embedding"],
            output_name="projection",
            output_dim=parity["projection"]["dim"],
        )
        comparator = OnnxPart(file=COMPARATOR_FILE, input_names=["projection_a", "projection_b"], output_name=OUTPUT)
    card = Card(
        name=name,
        version=version,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        backbone=backbone_spec(spec),
        head=HeadSpec(
            kind=head.kind,
            file=HEAD_FILE,
            input_names=(INPUT_A, INPUT_B),
            output_name=OUTPUT,
            params=head.params,
            projection=projection,
            comparator=comparator,
        ),
        calibration=calibration,
        metrics={**metrics, "parity_max_abs_diff": {k: v["max_abs_diff"] for k, v in parity.items()}},
        training_data=training_data,
        files={},
    )
    return card


def export_model(
    out_dir: Path,
    embedder: keras.Model,
    spec,
    head: HeadModels,
    calibration: Calibration,
    metrics: dict,
    training_data: dict,
    parity_images: Sequence[Path],
    parity_embeddings: np.ndarray,
    name: str | None = None,
    version: str = "1.0.0",
) -> Card:
    """Write backbone + head ONNX files, check parity, write model.json; returns the card."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parity = {"backbone": export_backbone(embedder, spec, out_dir, parity_images)}
    parity.update(export_head(head, out_dir, parity_embeddings))
    card = build_card(name or out_dir.name, version, spec, head, parity, calibration, metrics, training_data, out_dir)
    return seal_card(card, out_dir)
