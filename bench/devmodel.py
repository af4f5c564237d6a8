"""A small but real model directory for service tests and benchmarks, built with onnx.helper (no TensorFlow).

Backbone: NHWC image → strided conv + ReLU → per-channel mean/std of the feature map, plus per-channel mean/std
of the input ("style statistics") → embedding [N, 2C + 6]. Symmetric head: projection = L2-normalised MatMul,
comparator = sigmoid(w · [|a−b|, a*b] + b) → [N]; the pair head is the two composed. A `seed`-kind head
(concat → MLP → sigmoid, not symmetric) is available too. The card carries monotone calibration tables on the
0.00..1.00 grid with the pair (trial) counts a balanced validation set of that size would have (`DEV_PAIRS`,
`DEV_TRIALS`) and the rows' upper bounds for them, and the files' sha256, exactly as training/backbone/export.py writes
them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from contract.card import (
    Aggregation,
    BackboneSpec,
    Calibration,
    CalibrationRow,
    Card,
    EmbeddingRecipe,
    HeadSpec,
    OnnxPart,
    PortfolioCalibration,
    Preprocessing,
    seal_card,
)
from contract.operating import rate_upper
from training.backbone.onnxgraph import init as _init
from training.backbone.onnxgraph import save, save_projection_head
from training.backbone.onnxgraph import value as _f

CROP = 32
CHANNELS = 16
EMBEDDING_DIM = 2 * CHANNELS + 6
PROJECTION_DIM = 16


def _save_dev(graph: onnx.GraphProto, path: Path) -> None:
    save(graph, path, producer="devmodel")


def _mean_std(x: str, out_mean: str, out_std: str, prefix: str) -> list[onnx.NodeProto]:
    """Per-channel mean and std over the spatial axes of an NCHW tensor."""
    return [
        helper.make_node("ReduceMean", [x], [out_mean], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", [x, x], [f"{prefix}_sq"]),
        helper.make_node("ReduceMean", [f"{prefix}_sq"], [f"{prefix}_m2"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", [out_mean, out_mean], [f"{prefix}_m1sq"]),
        helper.make_node("Sub", [f"{prefix}_m2", f"{prefix}_m1sq"], [f"{prefix}_var0"]),
        helper.make_node("Relu", [f"{prefix}_var0"], [f"{prefix}_var"]),  # rounding can make it slightly < 0
        helper.make_node("Add", [f"{prefix}_var", "eps"], [f"{prefix}_vare"]),
        helper.make_node("Sqrt", [f"{prefix}_vare"], [out_std]),
    ]


def _backbone(path: Path, rng: np.random.Generator) -> None:
    nodes = [
        helper.make_node("Transpose", ["image"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("Relu", ["conv"], ["feat"]),
        *_mean_std("feat", "feat_mean", "feat_std", "f"),
        *_mean_std("x", "rgb_mean", "rgb_std", "c"),
        helper.make_node("Concat", ["feat_mean", "feat_std", "rgb_mean", "rgb_std"], ["embedding"], axis=1),
    ]
    inits = [
        _init("conv_w", rng.normal(0, 0.3, (CHANNELS, 3, 4, 4))),
        _init("conv_b", rng.normal(0, 0.1, (CHANNELS,))),
        _init("eps", np.array(1e-6)),
    ]
    graph = helper.make_graph(
        nodes, "backbone", [_f("image", "N", CROP, CROP, 3)], [_f("embedding", "N", EMBEDDING_DIM)], inits
    )
    _save_dev(graph, path)


def _projection_nodes(src: str, dst: str, tag: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("MatMul", [src, "proj_w"], [f"{tag}_lin"]),
        helper.make_node("LpNormalization", [f"{tag}_lin"], [dst], axis=1, p=2),
    ]


def _comparator_nodes(pa: str, pb: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sub", [pa, pb], ["diff"]),
        helper.make_node("Abs", ["diff"], ["absdiff"]),
        helper.make_node("Mul", [pa, pb], ["prod"]),
        helper.make_node("Concat", ["absdiff", "prod"], ["pairfeat"], axis=1),
        helper.make_node("MatMul", ["pairfeat", "cmp_w"], ["logit0"]),
        helper.make_node("Add", ["logit0", "cmp_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob2d"]),
        helper.make_node("Reshape", ["prob2d", "flat"], ["probability"]),
    ]


def _symmetric_head(out: Path, rng: np.random.Generator) -> int:
    proj_w = rng.normal(0, 1.0 / np.sqrt(EMBEDDING_DIM), (EMBEDDING_DIM, PROJECTION_DIM))
    # score falls with the L1 distance of the projections and rises with their cosine
    cmp_w = np.concatenate([np.full(PROJECTION_DIM, -1.5), np.full(PROJECTION_DIM, 2.0)])[:, None]
    cmp = [_init("cmp_w", cmp_w), _init("cmp_b", np.array([0.5])), numpy_helper.from_array(np.array([-1]), "flat")]
    proj = [_init("proj_w", proj_w)]
    save_projection_head(
        out, _projection_nodes, _comparator_nodes, (EMBEDDING_DIM, PROJECTION_DIM), proj, cmp, producer="devmodel"
    )
    return proj_w.size + cmp_w.size + 1


def _seed_head(out: Path, rng: np.random.Generator, hidden: int = 8) -> int:
    w1 = rng.normal(0, 0.3, (2 * EMBEDDING_DIM, hidden))
    w2 = rng.normal(0, 0.5, (hidden, 1))
    nodes = [
        helper.make_node("Concat", ["embedding_a", "embedding_b"], ["ab"], axis=1),
        helper.make_node("MatMul", ["ab", "w1"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob2d"]),
        helper.make_node("Reshape", ["prob2d", "flat"], ["probability"]),
    ]
    inits = [_init("w1", w1), _init("w2", w2), numpy_helper.from_array(np.array([-1]), "flat")]
    graph = helper.make_graph(
        nodes,
        "seed_head",
        [_f("embedding_a", "N", EMBEDDING_DIM), _f("embedding_b", "N", EMBEDDING_DIM)],
        [_f("probability", "N")],
        inits,
    )
    _save_dev(graph, out / "head.onnx")
    return w1.size + w2.size


# balanced: same-artist = different-artist pairs (trials) behind each dev table
DEV_PAIRS = 2000
DEV_TRIALS = 500


def _table(sharpness: float, n: int) -> list[CalibrationRow]:
    """Monotone rates on the 0.00..1.00 grid: FPR falls and FNR rises with the threshold; n pairs of each class."""
    rows = []
    for i in range(101):
        t = i / 100
        fpr, fnr = (1 - t) ** sharpness, t**sharpness
        tp, fp = 1 - fnr, fpr  # balanced validation pairs
        precision = tp / (tp + fp) if tp + fp > 0 else 1.0
        rows.append(
            CalibrationRow(
                threshold=round(t, 2),
                fpr=round(fpr, 6),
                fnr=round(fnr, 6),
                precision=round(min(precision, 1.0), 6),
                recall=round(tp, 6),
                fpr_upper=rate_upper(round(fpr, 6), n),
                fnr_upper=rate_upper(round(fnr, 6), n),
            )
        )
    return rows


def build_dev_model(
    out: str | Path,
    head: Literal["symmetric", "seed"] = "symmetric",
    seed: int = 0,
    version: str = "dev",
) -> Path:
    """Write a complete model directory (ONNX files + model.json) into `out` and return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _backbone(out / "backbone.onnx", rng)
    params = _symmetric_head(out, rng) if head == "symmetric" else _seed_head(out, rng)
    parts = (
        {
            "projection": OnnxPart(
                file="head_projection.onnx",
                input_names=["embedding"],
                output_name="projection",
                output_dim=PROJECTION_DIM,
            ),
            "comparator": OnnxPart(
                file="head_comparator.onnx", input_names=["projection_a", "projection_b"], output_name="probability"
            ),
        }
        if head == "symmetric"
        else {}
    )
    card = Card(
        name="devmodel",
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        backbone=BackboneSpec(
            file="backbone.onnx",
            arch="dev-conv",
            input_name="image",
            output_name="embedding",
            embedding_dim=EMBEDDING_DIM,
            embedding=EmbeddingRecipe(
                pooled_dim=CHANNELS,
                style_layers=["conv", "image"],
                style_dim=CHANNELS + 6,
                description="conv feature mean, conv feature std, input channel mean, input channel std",
            ),
            preprocessing=Preprocessing(
                resize_shorter=CROP,
                crop=(CROP, CROP),
                scale=1 / 255,
                mean=(0.485, 0.456, 0.406),
                std=(0.229, 0.224, 0.225),
            ),
            weights=f"random normal, seed {seed} (test model)",
        ),
        head=HeadSpec(
            kind=head,
            file="head.onnx",
            input_names=("embedding_a", "embedding_b"),
            output_name="probability",
            params=int(params),
            **parts,
        ),
        calibration=Calibration(
            pair=_table(2.0, DEV_PAIRS),
            genuine_pairs=DEV_PAIRS,
            impostor_pairs=DEV_PAIRS,
            aggregation=Aggregation(top_m=3),
            portfolio=[
                PortfolioCalibration(
                    k=k, table=_table(2.0 + k / 5, DEV_TRIALS), genuine_trials=DEV_TRIALS, impostor_trials=DEV_TRIALS
                )
                for k in (1, 3, 5, 10, 20)
            ],
            recommended_threshold=0.5,
            recommended_rule="EER on synthetic dev pairs",
        ),
        metrics={"note": "dev model for tests; numbers are not measured"},
        training_data={"corpus": "none"},
        files={},
    )
    seal_card(card, out)
    return out
