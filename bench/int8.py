"""int8 against fp32: the time to embed one picture (the card's grid of crops through the backbone, as the service
does it: service.serving.model.Model.embed_pictures) with two model directories, on real pictures; when both cut
pictures alike (an int8 backbone of the same recipe), how far the int8 embeddings stray from the fp32 ones. By
default the shipped fp32 model (models/default: 16 crops of 224 px) against the fast one (models/fast: 16 crops of
128 px on the int8 backbone): the backbone part of what the fast recipe saves.

The two models are timed round-robin (bench.common.measure_interleaved), so load from other processes on a shared
host falls on both alike; decoding and cutting the crops is done once, outside the timing.

    python -m bench.int8 --pictures data/met --n 10 --threads 2     # models/default against models/fast
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
    p.add_argument("--int8", type=Path, default=Path("models/fast"), help="the int8 model directory")
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
    same_recipe = fp32.card.backbone.preprocessing == int8.card.backbone.preprocessing
    files = pictures(args.pictures, n)
    decoded = [decode_file(f, CORPUS_LIMITS).image for f in files]
    inputs = {"fp32": [fp32.model_inputs(d) for d in decoded], "int8": [int8.model_inputs(d) for d in decoded]}
    crops = {k: len(v[0]) for k, v in inputs.items()}

    def embed(model: Model, key: str) -> None:
        for x in inputs[key]:
            model.embed_pictures([x])

    report = C.Report("int8", "int8 backbone against fp32: one picture's crops", C.command_line(), args.quick)
    stats = C.measure_interleaved(
        {"fp32": lambda: embed(fp32, "fp32"), "int8": lambda: embed(int8, "int8")}, repeat, warmup=1
    )
    per = {k: v.p50_ms / len(files) for k, v in stats.items()}
    cos = None
    if same_recipe:
        a = fp32.embed_pictures(inputs["fp32"]).astype(np.float64)
        b = int8.embed_pictures(inputs["int8"]).astype(np.float64)
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    ratio = per["int8"] / per["fp32"]
    rows = []
    for label, model in (("fp32", fp32), ("int8", int8)):
        size = (Path(model.model_dir) / model.card.backbone.file).stat().st_size
        p = model.card.backbone.preprocessing
        p99 = stats[label].p99_ms / len(files)
        rows.append([label, f"`{model.model_id}`", f"{p.grid[0]}x{p.grid[1]} x {p.crop[0]} px",
                     f"{size / 1e6:.1f}", C.fmt(per[label], 1), C.fmt(p99, 1)])  # fmt: skip
    report.table(
        f"{len(files)} pictures, {args.threads} intra-op threads, {providers}, {stats['fp32'].n} rounds (ms per "
        "picture: the round's p50 / p99 over the pictures; resizing and cutting the crops done before, untimed)",
        ["backbone", "model", "crops", "backbone MB", "ms per picture (p50)", "p99"],
        rows,
    )
    report.data = {
        "pictures": [str(f) for f in files],
        "crops": crops,
        "threads": args.threads,
        "ms_per_picture": per,
        "ratio": ratio,
        "embedding_cosine": None if cos is None else {"mean": float(cos.mean()), "min": float(cos.min())},
        "stats": {k: vars(v) for k, v in stats.items()},
    }
    agree = ""
    if cos is not None:
        agree = f"; embedding cosine mean {cos.mean():.4f}, worst {cos.min():.4f}"
        report.note(
            f"picture embeddings (the mean of {crops['int8']} L2-normalised crop features), int8 against fp32: "
            f"cosine mean {cos.mean():.4f}, worst {cos.min():.4f}."
        )
    else:
        report.note("the two models cut pictures differently: their embeddings are not comparable, only the times.")
    report.headline = (
        f"{args.int8} {per['int8']:.0f} ms vs {args.fp32} {per['fp32']:.0f} ms per picture ({ratio:.2f}x, "
        f"{args.threads} threads){agree}"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
