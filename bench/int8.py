"""int8 against fp32: the time to embed one picture (the card's grid of crops through the backbone, as the service
does it: service.serving.model.Model.embed_pictures) with two model directories that differ in their backbone,
on real pictures, and how far the int8 embeddings stray from the fp32 ones.

The two models are timed round-robin (bench.common.measure_interleaved), so load from other processes on a shared
host falls on both alike; decoding and cutting the crops is done once, outside the timing.

    python -m bench.int8 --pictures data/met --n 10 --threads 2
    python -m bench.int8 --quick --fp32 DIR --int8 DIR --pictures DIR
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import common as C

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def pictures(root: Path, n: int) -> list[Path]:
    """The first `n` pictures under `root`, in path order (the same ones every run)."""
    found = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if len(found) < n:
        raise SystemExit(f"{root}: {len(found)} pictures, {n} asked for")
    return found[:n]


def main(argv: list[str] | None = None) -> int:
    from contract.decode import CORPUS_LIMITS, decode_file
    from service.serving.model import Model, SessionConfig

    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, default=Path("models/default"), help="the fp32 model directory")
    p.add_argument("--int8", type=Path, default=Path("models/default-int8"), help="the int8 model directory")
    p.add_argument("--pictures", type=Path, default=Path("data/met"), help="a folder of pictures (searched deep)")
    p.add_argument("--n", type=int, default=10, help="how many pictures")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--repeat", type=int, default=7, help="rounds over the pictures")
    args = p.parse_args(argv)
    n, repeat = (min(args.n, 3), 2) if args.quick else (args.n, args.repeat)

    providers = "cuda" if args.providers == "cuda" else "cpu"
    session = SessionConfig(intra_op_threads=args.threads)
    fp32 = Model.load(args.fp32, providers=providers, session=session)
    int8 = Model.load(args.int8, providers=providers, session=session)
    if fp32.card.backbone.preprocessing != int8.card.backbone.preprocessing:
        raise SystemExit("the two models cut pictures differently: nothing to compare")
    files = pictures(args.pictures, n)
    inputs = [fp32.model_inputs(decode_file(f, CORPUS_LIMITS).image) for f in files]
    crops = len(inputs[0])

    def embed(model: Model) -> None:
        for x in inputs:
            model.embed_pictures([x])

    report = C.Report("int8", "int8 backbone against fp32: one picture's crops", C.command_line(), args.quick)
    stats = C.measure_interleaved({"fp32": lambda: embed(fp32), "int8": lambda: embed(int8)}, repeat, warmup=1)
    per = {k: v.p50_ms / len(inputs) for k, v in stats.items()}
    a, b = fp32.embed_pictures(inputs).astype(np.float64), int8.embed_pictures(inputs).astype(np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    ratio = per["int8"] / per["fp32"]
    rows = []
    for label, model in (("fp32", fp32), ("int8", int8)):
        size = (Path(model.model_dir) / model.card.backbone.file).stat().st_size
        rows.append([label, f"`{model.model_id}`", f"{size / 1e6:.1f}", C.fmt(per[label], 1),
                     C.fmt(stats[label].p99_ms / len(inputs), 1)])  # fmt: skip
    report.table(
        f"{len(inputs)} pictures x {crops} crops, {args.threads} intra-op threads, {providers}, "
        f"{stats['fp32'].n} rounds (ms per picture: the round's p50 / p99 over the pictures)",
        ["backbone", "model", "backbone MB", "ms per picture (p50)", "p99"],
        rows,
    )
    report.data = {
        "pictures": [str(f) for f in files],
        "crops": crops,
        "threads": args.threads,
        "ms_per_picture": per,
        "ratio": ratio,
        "embedding_cosine": {"mean": float(cos.mean()), "min": float(cos.min())},
        "stats": {k: vars(v) for k, v in stats.items()},
    }
    report.note(
        f"picture embeddings (the mean of {crops} L2-normalised crop features), int8 against fp32: cosine mean "
        f"{cos.mean():.4f}, worst {cos.min():.4f}."
    )
    report.headline = (
        f"int8 {per['int8']:.0f} ms vs fp32 {per['fp32']:.0f} ms per {crops}-crop picture ({ratio:.2f}x the fp32 "
        f"time, {args.threads} threads); embedding cosine mean {cos.mean():.4f}, worst {cos.min():.4f}"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
