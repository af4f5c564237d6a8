"""Embedding cache: a dealer's session — one candidate compared with N distinct others — with the cache on and off.

Two runtimes as the server builds them from `Settings` (no HTTP), on one loaded model: one with
`embedding_cache_mb` at its default, one with 0. A session is `Scorer.compare(candidate, other_i)` for i = 1..N,
one after the other (one client, as a dealer works through a shortlist); every session has pictures of its own,
so nothing is cached from an earlier one. With the cache the candidate is embedded once per session — N + 1
pictures through the backbone instead of 2N. Sessions alternate on, off, off, on, … so background load falls on
both. After each session with the cache, the same session is sent again (a client retrying): every picture a
hit. Then the same with a session's N compares sent at once (a client firing its shortlist concurrently, new
pictures again): without the cache the candidate is embedded N times at once; with it, once, the other requests
waiting for that embedding in flight (single flight). Pictures are 800×600 JPEGs (bench/pictures.py), so decoding
costs what it does in use.

    python -m bench.cache_cost [--quick] [--others 6] [--sessions 6] [--model-dir DIR] [--providers cuda]
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

PICTURE_SIZE = (800, 600)
MODES = ("off", "on", "retry", "off, at once", "on, at once")


def session_pictures(session: int, others: int) -> tuple[bytes, list[bytes]]:
    """A session's candidate and its `others`, none shared with another session."""
    first = 1 + session * (others + 1)
    return painting_jpeg(first, session, PICTURE_SIZE), [
        painting_jpeg(first + 1 + i, session, PICTURE_SIZE) for i in range(others)
    ]


async def measure(
    model_dir: Path, providers: Literal["cpu", "cuda"], tmp: Path, sessions: int, others: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[int]], dict[str, int], str]:
    """Per mode, every compare's wall time, every session's, and the pictures through the backbone per session;
    the cache's counts; the provider."""
    from service.config import Settings
    from service.serving.model import Model
    from service.serving.runtime import Runtime

    model = Model.load(model_dir, providers=providers)

    def settings(mode: str) -> Settings:
        s = Settings(data_dir=tmp / f"data-{mode}", model_dir=model_dir, gpu_index=False, providers=providers)
        return s.model_copy(update={"embedding_cache_mb": 0}) if mode == "off" else s  # "on": the default

    runtimes = {mode: Runtime.build(model, settings(mode)) for mode in ("off", "on")}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    backbone: dict[str, list[int]] = {m: [] for m in MODES}
    walls: dict[str, list[float]] = {m: [] for m in MODES}

    async def timed(mode: str, runtime: Runtime, candidate: bytes, other: bytes) -> None:
        t0 = time.perf_counter()
        await runtime.scorer.compare(candidate, other)
        times[mode].append(time.perf_counter() - t0)

    async def run(mode: str, runtime: Runtime, candidate: bytes, pool: list[bytes]) -> None:
        before, t0 = runtime.embedder.batcher.items_run, time.perf_counter()
        if mode.endswith("at once"):
            await asyncio.gather(*(timed(mode, runtime, candidate, other) for other in pool))
        else:
            for other in pool:
                await timed(mode, runtime, candidate, other)
        walls[mode].append(time.perf_counter() - t0)
        backbone[mode].append(runtime.embedder.batcher.items_run - before)

    try:
        for runtime in runtimes.values():
            await runtime.start()
            warm = painting_jpeg(0, 1, PICTURE_SIZE), painting_jpeg(0, 2, PICTURE_SIZE)
            await runtime.scorer.compare(*warm)  # sessions, the batcher's loop and thread up
        for s in range(sessions):
            candidate, pool = session_pictures(s, others)
            for mode in ("on", "off") if s % 2 == 0 else ("off", "on"):
                await run(mode, runtimes[mode], candidate, pool)
                if mode == "on":
                    await run("retry", runtimes["on"], candidate, pool)
        for s in range(sessions, 2 * sessions):  # new pictures: nothing cached by the sequential sessions
            candidate, pool = session_pictures(s, others)
            for mode in ("on", "off") if s % 2 == 0 else ("off", "on"):
                await run(f"{mode}, at once", runtimes[mode], candidate, pool)
        stats = runtimes["on"].factory.cache_stats
        counts = {"hits": stats.hits, "misses": stats.misses, "evictions": stats.evictions}
        counts["shared"] = stats.shared
        counts["mb"] = runtimes["on"].settings.embedding_cache_mb
        return times, walls, backbone, counts, model.providers[0]
    finally:
        for runtime in runtimes.values():
            await runtime.stop()
            runtime.close()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--others", type=int, default=6, help="pictures the candidate is compared with (default 6)")
    p.add_argument("--sessions", type=int, default=None, help="sessions per mode (default 6; quick 2)")
    p.add_argument("--model-dir", default=None, help="model directory (default models/default, else the dev model)")
    args = p.parse_args(argv)
    C.ort_providers(args.providers)
    sessions = args.sessions or (2 if args.quick else 6)
    n = args.others
    report = C.Report(
        "cache_cost",
        f"Embedding cache: a dealer's session (1 candidate vs {n} others), cache on vs off",
        C.command_line(),
        args.quick,
    )
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        model_dir, which = C.resolve_model_dir(args.model_dir, Path(tmp), build=not args.quick)
        times, walls, backbone, counts, provider = asyncio.run(
            measure(model_dir, args.providers, Path(tmp), sessions, n)
        )
    stats = {m: C.Stats.of(times[m]) for m in MODES}
    per_session = {m: sum(walls[m]) / len(walls[m]) * 1e3 for m in MODES}
    names = {
        "off": "cache off (`EMBEDDING_CACHE_MB=0`)",
        "on": f"cache on ({counts['mb']} MB)",
        "retry": "cache on, the same session again",
        "off, at once": f"cache off, the {n} compares sent at once",
        "on, at once": f"cache on, the {n} compares sent at once (single flight)",
    }
    rows = [
        [
            names[m],
            stats[m].n,
            C.fmt(stats[m].mean_ms, 0),
            C.fmt(stats[m].p50_ms, 0),
            C.fmt(stats[m].p99_ms, 0),
            C.fmt(per_session[m], 0),
            f"{sum(backbone[m]) / len(backbone[m]):g}",
        ]
        for m in MODES
    ]
    report.table(
        f"`Scorer.compare` in process: {sessions} sessions per mode of 1 candidate vs {n} others, "
        f"{PICTURE_SIZE[0]}×{PICTURE_SIZE[1]} JPEGs, {provider}",
        ["", "compares", "mean ms", "p50 ms", "p99 ms", "session wall ms", "pictures through the backbone per session"],
        rows,
    )
    off, on, retry = stats["off"], stats["on"], stats["retry"]
    off_once, on_once = stats["off, at once"], stats["on, at once"]
    report.table(
        "Ratios (off ÷ on: how much faster with the cache)",
        ["", "mean", "p50", "session"],
        [
            [
                "cache off ÷ on",
                f"**{C.ratio(off.mean_ms, on.mean_ms):.2f}×**",
                f"**{C.ratio(off.p50_ms, on.p50_ms):.2f}×**",
                f"{C.ratio(per_session['off'], per_session['on']):.2f}×",
            ],
            [
                "cache off ÷ the same session again",
                f"{C.ratio(off.mean_ms, retry.mean_ms):.0f}×",
                f"{C.ratio(off.p50_ms, retry.p50_ms):.0f}×",
                f"{C.ratio(per_session['off'], per_session['retry']):.0f}×",
            ],
            [
                "sent at once: cache off ÷ on",
                f"**{C.ratio(off_once.mean_ms, on_once.mean_ms):.2f}×**",
                f"**{C.ratio(off_once.p50_ms, on_once.p50_ms):.2f}×**",
                f"{C.ratio(per_session['off, at once'], per_session['on, at once']):.2f}×",
            ],
        ],
    )
    report.note(
        f"Model: {which}. Two runtimes on one loaded model (`Runtime.build`, as the server builds it from "
        f"`Settings`; no HTTP): one with the cache at {counts['mb']} MB, one with `embedding_cache_mb=0`. Each "
        "session has pictures of its own; sessions alternate on/off, off/on; after each session with the cache it "
        f"is sent again (the retry row). The cache: {counts['hits']} hits, {counts['misses']} misses "
        f"({counts['shared']} of them answered by an embedding in flight), {counts['evictions']} evictions over "
        "the run."
    )
    report.note(
        f"With the cache the candidate is embedded once per session ({n + 1} pictures through the backbone instead "
        f"of {2 * n}): the first compare of a session costs what it does without the cache, each later one about "
        "half. The retry row is the floor: decoding, the quality step and the backbone skipped, the head and the "
        "calibration still run. Sent at once, the session's wall time is what the client waits for its whole "
        f"shortlist; with the cache the candidate's {n - 1} other copies wait for its one embedding in flight."
    )
    report.data = {
        "model": which,
        "provider": provider,
        "others": n,
        "sessions": sessions,
        "stats": {m: vars(s) for m, s in stats.items()},
        "session_ms": per_session,
        "backbone_pictures_per_session": {m: backbone[m] for m in MODES},
        "cache": counts,
        "off_over_on_mean": C.ratio(off.mean_ms, on.mean_ms),
        "off_over_on_p50": C.ratio(off.p50_ms, on.p50_ms),
        "at_once_off_over_on_session": C.ratio(per_session["off, at once"], per_session["on, at once"]),
    }
    report.headline = (
        f"dealer's session, 1 candidate vs {n} others: compare mean {C.fmt(on.mean_ms, 0)} ms with the cache vs "
        f"{C.fmt(off.mean_ms, 0)} ms without ({C.ratio(off.mean_ms, on.mean_ms):.2f}×), p50 {C.fmt(on.p50_ms, 0)} "
        f"vs {C.fmt(off.p50_ms, 0)} ms ({C.ratio(off.p50_ms, on.p50_ms):.2f}×); the session again "
        f"{C.fmt(retry.mean_ms, 1)} ms; sent at once, the session {C.fmt(per_session['on, at once'], 0)} vs "
        f"{C.fmt(per_session['off, at once'], 0)} ms "
        f"({C.ratio(per_session['off, at once'], per_session['on, at once']):.2f}×) [{provider}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
