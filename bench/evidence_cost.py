"""Evidence cost: /v1/verify's scoring path with and without `evidence=n`, on one model, in this process.

Times one verify of a query against a 10-work portfolio for n = none, 2, 3, 4 (the runtime as the server builds
it from `Settings`, no HTTP) and the ratio to a plain verify. The regions are submitted to the backbone
together (one run while their crops fit `batch_max_size`), so n×n regions cost less than n×n verifies.
Pictures are bench/pictures.py paintings.

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
LARGEST = 4  # evidence.MAX_GRID
GRIDS: tuple[int | None, ...] = (None, 2, 3, LARGEST)


def grid_name(grid: int | None) -> str:
    return "none" if grid is None else f"{grid}x{grid}"


async def measure(
    model_dir: Path, providers: Literal["cpu", "cuda"], data_dir: Path, repeats: int, size: tuple[int, int]
) -> dict[str, C.Stats]:
    """Per grid, the wall time of one `Scorer.verify` (one warm-up run each, then `repeats` timed runs)."""
    from service.config import Settings
    from service.serving.runtime import Runtime

    model = C.load_model(model_dir, providers)
    settings = Settings(data_dir=data_dir, model_dir=model_dir, gpu_index=False, providers=providers)
    runtime = Runtime.build(model, settings)
    await runtime.start()
    try:
        runtime.portfolios.create_artist("a", "A")
        await runtime.portfolios.add_works("a", [(f"{i}.jpg", painting_jpeg(1, i, size)) for i in range(PORTFOLIO)])
        query = painting_jpeg(1, 99, size)
        stats = {}
        for grid in GRIDS:
            await runtime.scorer.verify(query, "a", evidence=grid)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await runtime.scorer.verify(query, "a", evidence=grid)
                times.append(time.perf_counter() - t0)
            stats[grid_name(grid)] = C.Stats.of(times)
        return stats
    finally:
        await runtime.stop()
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None, help="timed verifies per grid (default 10; quick 3)")
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
        stats = asyncio.run(measure(model_dir, args.providers, Path(tmp) / "data", repeats, (w, h)))

    plain = stats["none"].p50_ms
    rows = [
        [name, C.fmt(s.p50_ms, 1), C.fmt(s.p99_ms, 1), C.fmt(C.ratio(s.p50_ms, plain)), s.n]
        for name, s in stats.items()
    ]
    report.table(
        f"One verify against a {PORTFOLIO}-work portfolio, {w}×{h} pictures, {args.providers}",
        ["evidence", "p50 ms", "p99 ms", "× plain (p50)", "runs"],
        rows,
    )
    report.note(f"Model: {which}.")
    report.note("Wall time of `Scorer.verify` in this process (decode, preprocess, backbone, head, aggregation).")
    report.data = {name: vars(s) for name, s in stats.items()}
    worst = stats[grid_name(LARGEST)]
    report.headline = (
        f"plain verify {C.fmt(plain, 0)} ms p50; evidence={LARGEST} {C.fmt(worst.p50_ms, 0)} ms "
        f"({C.fmt(C.ratio(worst.p50_ms, plain))}× plain) for {LARGEST**2} extra embeddings"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
