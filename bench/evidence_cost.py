"""Evidence cost: /v1/verify's scoring path with and without `evidence=n`, on one model, in this process.

Times one verify of a query against a 10-work portfolio for n = none, 2, 3, 4 (the runtime as the server builds
it from `Settings`, no HTTP) and gives each map's cost as a ratio to a plain verify, side by side in one run: the
grids take turns within every round, so a change in the machine's load falls on all of them alike. A model whose
crop grid has at least n rows and columns (the shipped model's 4×4: every n) pools the map from the crops the
verify already computed (`method` crops, service/serving/evidence.py); a coarser one sends the n×n regions
through the recipe (`regions`). Pictures are bench/pictures.py paintings.

    python -m bench.evidence_cost [--quick] [--repeats 10] [--size 640x480] [--model-dir DIR] [--providers cuda]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from bench import common as C
from bench.pictures import painting_jpeg

PORTFOLIO = 10
GRIDS: tuple[int | None, ...] = (None, 2, 3, 4)  # none, then evidence.MIN_GRID .. evidence.MAX_GRID
TARGET = 1.3  # issue 16: a verify with evidence=n costs at most 1.3× a plain verify


def grid_name(grid: int | None) -> str:
    return "none" if grid is None else f"{grid}x{grid}"


async def measure(
    model_dir: Path, providers: Literal["cpu", "cuda"], data_dir: Path, repeats: int, size: tuple[int, int]
) -> tuple[dict[str, C.Stats], dict[str, str]]:
    """Per grid, the wall time of one `Scorer.verify` (one warm-up run each, then `repeats` rounds in which every
    grid runs once, in turn), and how its map was computed."""
    from service.config import Settings
    from service.serving.runtime import Runtime

    model = C.load_model(model_dir, providers)
    # the same query again and again: without the embedding cache off, the plain verify would embed nothing
    settings = Settings(
        data_dir=data_dir, model_dir=model_dir, gpu_index=False, providers=providers, embedding_cache_mb=0
    )
    runtime = Runtime.build(model, settings)
    await runtime.start()
    try:
        runtime.portfolios.create_artist("a", "A")
        works = [(f"{i}.jpg", painting_jpeg(1, i, size)) for i in range(PORTFOLIO)]
        await runtime.portfolios.add_works("a", works, allow_duplicate=True)  # alike to the model: all wanted
        query = painting_jpeg(1, 99, size)
        methods = {}
        for grid in GRIDS:  # warm-up
            v = await runtime.scorer.verify(query, "a", evidence=grid)
            methods[grid_name(grid)] = "–" if v.evidence is None else v.evidence.method
        times: dict[str, list[float]] = {grid_name(g): [] for g in GRIDS}
        for _ in range(repeats):
            for grid in GRIDS:
                t0 = time.perf_counter()
                await runtime.scorer.verify(query, "a", evidence=grid)
                times[grid_name(grid)].append(time.perf_counter() - t0)
        return {name: C.Stats.of(t) for name, t in times.items()}, methods
    finally:
        await runtime.stop()
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeats", type=int, default=None, help="rounds of timed verifies, one per grid (default 10; quick 3)"
    )
    p.add_argument("--size", default=None, help="query and portfolio picture size WxH (default 640x480; quick 320x240)")
    p.add_argument("--model-dir", default=None, help="model directory (default models/default, else the dev model)")
    args = p.parse_args(argv)
    C.ort_providers(args.providers)
    repeats = args.repeats or (3 if args.quick else 10)
    w, h = (int(v) for v in (args.size or ("320x240" if args.quick else "640x480")).lower().split("x"))
    report = C.Report(
        "evidence_cost", "Evidence maps: what `evidence=n` adds to a verify", C.command_line(), args.quick
    )

    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        model_dir, which = C.resolve_model_dir(args.model_dir, Path(tmp), build=not args.quick)
        stats, methods = asyncio.run(measure(model_dir, args.providers, Path(tmp) / "data", repeats, (w, h)))

    plain = stats["none"].p50_ms
    ratios = {name: C.ratio(s.p50_ms, plain) for name, s in stats.items()}
    rows = [
        [name, methods[name], C.fmt(s.p50_ms, 1), C.fmt(s.p99_ms, 1), C.fmt(ratios[name]), s.n]
        for name, s in stats.items()
    ]
    report.table(
        f"One verify against a {PORTFOLIO}-work portfolio, {w}×{h} pictures, {args.providers}",
        ["evidence", "method", "p50 ms", "p99 ms", "× plain (p50)", "runs"],
        rows,
    )
    maps = [grid_name(g) for g in GRIDS if g is not None]
    side = " / ".join(f"{name} {C.fmt(ratios[name])}×" for name in maps)
    worst = max(ratios[name] for name in maps)
    report.target(f"verify with evidence=n ≤ {TARGET}× a plain verify (p50), n = 2, 3, 4", side, worst <= TARGET)
    report.note(f"Model: {which}.")
    report.note(
        "Wall time of `Scorer.verify` in this process (decode, preprocess, backbone, head, aggregation, the map). "
        "Each round runs every grid once, in turn; p50 and p99 are over the rounds."
    )
    report.data = {"stats": {name: vars(s) for name, s in stats.items()}, "methods": methods, "ratios": ratios}
    report.headline = f"plain verify {C.fmt(plain, 0)} ms p50; with evidence=n, × plain: {side}"
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
