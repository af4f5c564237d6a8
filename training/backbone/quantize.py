"""An int8 backbone: static quantisation of a backbone ONNX with onnxruntime.quantization, checked against fp32.

1. `quant_pre_process` (ONNX shape inference and onnxruntime's graph optimisations, the step onnxruntime asks
   for before quantising);
2. `quantize_static` in QDQ format: weights int8 per output channel (QInt8, symmetric), activations uint8
   (QUInt8) with ranges from MinMax calibration over real crops (`CalibrationDataReader` of `calibration`); the
   first `FLOAT_CONVS` convolutions (EfficientNet-Lite's stem and first block) stay fp32: quantised, they moved
   the features of dark crops most (on the Met set, one held-out crop of a dark background fell to cosine 0.69
   with every convolution int8, against a worst of 0.97 with the first three in fp32, at the same speed);
3. parity on crops the calibration never saw (`held_out`): each crop's features as the service computes them
   (contract.recipe.crop_features with the card's EmbeddingRecipe) from the fp32 and the int8 backbone, and
   their cosine. Below `MIN_MEAN_COSINE` on average or `MIN_WORST_COSINE` for any crop the int8 file is refused
   (`QuantisationError`) and `dst` is left as it was.

`sample_crops` draws the calibration and held-out crops from a corpus (the pictures' own `model_inputs`, seeded
and disjoint by painting). `training/realmodel.py` (`make-real --int8`) uses both and records the returned figures
in the card (`metrics["quantisation"]`). Covered by tests/training/test_quantize.py.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.card import EmbeddingRecipe
from contract.recipe import crop_features
from training.backbone.sessions import cpu_session

# Refuse an int8 backbone whose held-out crop features point elsewhere than fp32's: on average (the whole
# embedding moves) or for any one crop (a kind of picture the calibration ranges clip).
MIN_MEAN_COSINE = 0.95
MIN_WORST_COSINE = 0.70
# The corpus sample: paintings x crops each for the activation ranges, and other paintings for the parity check.
CALIBRATION_PAINTINGS = 24
HELD_OUT_PAINTINGS = 24
CROPS_PER_PAINTING = 4
BATCH = 4
# Convolutions left in fp32, counted from the input (see the module docstring).
FLOAT_CONVS = 3
METHOD = (
    "onnxruntime.quantization: quant_pre_process, then quantize_static in QDQ format, weights int8 per output "
    "channel (QInt8, symmetric), activations uint8 (QUInt8), MinMax calibration; the first convolutions fp32"
)


def name_nodes(path: Path) -> None:
    """Give every unnamed node of the ONNX file a unique name (onnxruntime.quantization picks nodes by name)."""
    import onnx

    model = onnx.load(str(path))
    taken = {node.name for node in model.graph.node}
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            changed = True
    if changed:
        onnx.save(model, str(path))


def first_convs(path: Path, n: int) -> list[str]:
    """The names of the first `n` Conv nodes of the (topologically sorted) graph: the ones nearest the input."""
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"][:n]


class QuantisationError(RuntimeError):
    """The int8 backbone is refused: its features are too far from the fp32 backbone's."""


@dataclass(frozen=True)
class CropSample:
    """Backbone inputs [n, H, W, 3] for calibration and for the parity check, from disjoint paintings."""

    calibration: np.ndarray
    held_out: np.ndarray
    calibration_paintings: int
    held_out_paintings: int
    seed: int


def sample_crops(
    paths: Sequence[Path],
    backbone: Any,
    *,
    paintings: int = CALIBRATION_PAINTINGS,
    held_out_paintings: int = HELD_OUT_PAINTINGS,
    per_painting: int = CROPS_PER_PAINTING,
    seed: int = 0,
) -> CropSample:
    """`per_painting` of each picture's crops (contract.recipe.model_inputs under `backbone`'s preprocessing, the
    crops the service cuts) for `paintings` pictures drawn with `seed`, and as many of `held_out_paintings` others.
    With fewer pictures than asked, the calibration keeps at least half of them and the rest are held out."""
    from contract.decode import CORPUS_LIMITS, decode_file
    from contract.recipe import model_inputs

    n = len(paths)
    if n < 2:
        raise QuantisationError("need at least 2 pictures: some to calibrate on and others to check parity on")
    n_cal = min(paintings, max(1, n // 2))
    n_held = min(held_out_paintings, n - n_cal)
    if n_cal < 1 or n_held < 1:
        raise QuantisationError(f"asked for {paintings} + {held_out_paintings} paintings of {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)

    def crops(idx: np.ndarray) -> np.ndarray:
        out = []
        for i in idx:
            x = model_inputs(decode_file(paths[int(i)], CORPUS_LIMITS).image, backbone)
            keep = rng.choice(len(x), size=min(per_painting, len(x)), replace=False)
            out.append(x[np.sort(keep)])
        return np.concatenate(out).astype(np.float32)

    return CropSample(crops(order[:n_cal]), crops(order[n_cal : n_cal + n_held]), n_cal, n_held, seed)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over an array of inputs, `batch` at a time."""

    def __init__(self, name: str, x: np.ndarray, batch: int):
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{name: x[i : i + batch]} for i in range(0, len(x), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _input_name(path: Path) -> str:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    if len(names) != 1:
        raise QuantisationError(f"{path}: expected one image input, found {names}")
    return names[0]


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each type the ONNX file has (QuantizeLinear, DequantizeLinear, Conv, ...)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def features(path: Path, x: np.ndarray, recipe: EmbeddingRecipe, batch: int = 16) -> np.ndarray:
    """Per crop, the features the service combines (contract.recipe.crop_features of the backbone's outputs)."""
    sess = cpu_session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [crop_features(sess.run(None, {name: x[i : i + batch]})[0], recipe) for i in range(0, len(x), batch)]
    )


def parity(fp32: Path, int8: Path, held_out: np.ndarray, recipe: EmbeddingRecipe) -> dict[str, Any]:
    """Cosine of each held-out crop's features from the int8 backbone to the fp32 backbone's."""
    a = features(fp32, held_out, recipe).astype(np.float64)
    b = features(int8, held_out, recipe).astype(np.float64)
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {
        "crops": len(cos),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "cosine_p05": float(np.quantile(cos, 0.05)),
    }


def time_crops(fp32: Path, int8: Path, x: np.ndarray, *, n: int = 16, threads: int = 2, repeats: int = 5) -> dict:
    """Seconds for one batch of `n` crops (a picture of a 4x4 grid) through each backbone, median of `repeats`
    runs after a warm-up, `threads` intra-op threads."""
    batch = np.resize(x, (n, *x.shape[1:])).astype(np.float32)
    out: dict[str, Any] = {"crops": n, "threads": threads, "repeats": repeats, "machine": _machine()}
    for label, path in (("fp32", fp32), ("int8", int8)):
        sess = cpu_session(path, threads=threads)
        name = sess.get_inputs()[0].name
        sess.run(None, {name: batch})
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sess.run(None, {name: batch})
            times.append(time.perf_counter() - t)
        out[f"{label}_s"] = float(np.median(times))
    out["ratio"] = out["int8_s"] / out["fp32_s"]
    return out


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model or platform.processor() or platform.machine()


def quantize_backbone(
    src: Path,
    dst: Path,
    calibration: np.ndarray,
    *,
    held_out: np.ndarray,
    recipe: EmbeddingRecipe,
    min_mean: float = MIN_MEAN_COSINE,
    min_worst: float = MIN_WORST_COSINE,
    batch: int = BATCH,
    float_convs: int | None = None,
    timing: bool = True,
) -> dict[str, Any]:
    """Quantise the backbone `src` to int8 into `dst` (may be `src`: replaced only once parity holds) with
    activation ranges from the `calibration` inputs, and check it against `src` on the `held_out` inputs (see the
    module docstring). `float_convs`: how many convolutions nearest the input stay fp32 (None: FLOAT_CONVS).
    Returns the figures the card records; raises QuantisationError below the thresholds."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if len(calibration) == 0 or len(held_out) == 0:
        raise QuantisationError("need calibration crops and held-out crops")
    name = _input_name(src)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        shutil.copyfile(src, fp32)
        pre, int8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # ONNX's own shape inference: a CNN's shapes need no symbolic inference (which would pull in sympy)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        name_nodes(pre)
        kept_float = first_convs(pre, FLOAT_CONVS if float_convs is None else float_convs)
        quantize_static(
            str(pre),
            str(int8),
            _Reader(name, np.asarray(calibration, np.float32), batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
        )
        figures = parity(fp32, int8, np.asarray(held_out, np.float32), recipe)
        ops = op_counts(int8)
        result: dict[str, Any] = {
            "method": METHOD,
            "onnxruntime": onnxruntime.__version__,
            "calibration_crops": len(calibration),
            "fp32_nodes": kept_float,
            "held_out": figures,
            "thresholds": {"cosine_mean": min_mean, "cosine_min": min_worst},
            "fp32_bytes": fp32.stat().st_size,
            "int8_bytes": int8.stat().st_size,
            "quantize_linear": ops.get("QuantizeLinear", 0),
            "dequantize_linear": ops.get("DequantizeLinear", 0),
        }
        if figures["cosine_mean"] < min_mean or figures["cosine_min"] < min_worst:
            raise QuantisationError(
                f"the int8 backbone's features stray from fp32's on {figures['crops']} held-out crops: cosine mean "
                f"{figures['cosine_mean']:.4f} (at least {min_mean} wanted), worst {figures['cosine_min']:.4f} "
                f"(at least {min_worst} wanted); {dst} left as it was"
            )
        if timing:
            result["timing"] = time_crops(fp32, int8, np.asarray(held_out, np.float32))
        shutil.copyfile(int8, dst)
    return result


def describe(figures: dict[str, Any]) -> str:
    """One line for the card's backbone description: how the int8 backbone was made and how close it stays."""
    h = figures["held_out"]
    cal = figures.get("calibration_paintings")
    return (
        f"int8: statically quantised (QDQ, per-channel int8 weights, uint8 activations; the first "
        f"{len(figures['fp32_nodes'])} convolutions fp32) with activation ranges from {figures['calibration_crops']} "
        "crops"
        + (f" of {cal} paintings of {figures['calibration_source']}" if cal else "")
        + f"; per-crop feature cosine to fp32 on {h['crops']} held-out crops mean {h['cosine_mean']:.3f}, "
        f"worst {h['cosine_min']:.3f}"
    )
