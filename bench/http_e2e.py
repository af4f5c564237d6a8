"""HTTP end to end: `/v1/compare` and `/v1/verify` through uvicorn on loopback, 1 and 16 concurrent clients,
micro-batching on (`BRUSHPRINT_BATCH_MAX_SIZE=16`) against off (`=1`): throughput, p50/p99 and the ratios.

Each configuration gets its own `python -m service` with a temporary data dir and a bootstrap admin key and
enrols one artist over HTTP; then each route is driven for a fixed time by N clients that each send their
next request as soon as the previous answer arrives (closed loop). The client runs in this process on the
same cores as the server, as it would on a single box. Both servers run side by side and each cell is
measured in ABBA halves (on, off, off, on), so that changing background load favours neither. Everything is
bounded: fixed durations, request timeouts, and the servers are stopped on the way out whatever happens.

    python -m bench.http_e2e [--quick] [--duration S] [--clients 1,16] [--model-dir DIR] [--providers cuda]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import common as C

ARTIST = "bench-artist"
PORTFOLIO = 12  # works enrolled for /verify
POOL = 48  # distinct query images, so no request repeats its neighbour's bytes


def enrol(url: str, images: list[bytes], artist: str = ARTIST) -> None:
    import httpx

    h = {"X-API-Key": C.ADMIN_KEY}
    with httpx.Client(base_url=url, headers=h, timeout=120) as c:
        r = c.post("/v1/artists", json={"id": artist, "name": "Benchmark Artist"})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"create artist: {r.status_code} {r.text}")
        files = [("image", (f"w{i}.jpg", b, "image/jpeg")) for i, b in enumerate(images)]
        r = c.post(f"/v1/artists/{artist}/works", files=files)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"enrol works: {r.status_code} {r.text}")


def request_for(route: str, pool: list[bytes], i: int) -> tuple[list, dict]:
    if route == "/v1/compare":
        a, b = pool[i % len(pool)], pool[(i * 7 + 3) % len(pool)]
        return [("image_a", ("a.jpg", a, "image/jpeg")), ("image_b", ("b.jpg", b, "image/jpeg"))], {}
    return [("image", ("q.jpg", pool[i % len(pool)], "image/jpeg"))], {"artist_id": ARTIST}


async def drive(url: str, route: str, pool: list[bytes], clients: int, duration: float) -> dict:
    """Closed-loop load: `clients` workers, each sends its next request when the last one is answered."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": C.ADMIN_KEY}, timeout=60, limits=limits) as client:

        async def one(i: int) -> tuple[float, int]:
            files, data = request_for(route, pool, i)
            t0 = time.perf_counter()
            r = await client.post(route, files=files, data=data)
            return time.perf_counter() - t0, r.status_code

        # warm-up: every connection opened and every code path run once before the clock starts
        await asyncio.gather(*(one(i) for i in range(clients)))
        latencies: list[float] = []
        codes: Counter[int] = Counter()
        stop = time.perf_counter() + duration

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < stop:
                dt, code = await one(i)
                codes[code] += 1
                if code == 200:
                    latencies.append(dt)
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"latencies": latencies, "codes": codes, "elapsed_s": elapsed}


def summarise(parts: list[dict]) -> dict:
    """Pool the timed slices of one configuration: requests/s over their total time, percentiles over all."""
    latencies = [x for p in parts for x in p["latencies"]]
    codes: Counter[int] = Counter()
    for p in parts:
        codes.update(p["codes"])
    elapsed = sum(p["elapsed_s"] for p in parts)
    stats = C.Stats.of(latencies) if latencies else C.Stats(0, float("nan"), float("nan"), float("nan"))
    return {
        "rps": len(latencies) / elapsed,
        "ok": len(latencies),
        "codes": dict(codes),
        "elapsed_s": elapsed,
        **vars(stats),
    }


def batch_sizes(url: str) -> str:
    """Mean backbone batch size from /metrics, when the service exports a batch-size histogram."""
    import httpx

    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return "–"
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("#") or "batch_size" not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.split("{")[0].endswith("_sum"):
            total += float(value)
        elif name.split("{")[0].endswith("_count"):
            count += float(value)
    return f"{total / count:.1f}" if count else "–"


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 20; quick 4)")
    p.add_argument("--clients", default="1,16", help="concurrent clients (default 1,16)")
    p.add_argument("--routes", default=None, help="default /v1/compare,/v1/verify (quick: /v1/compare)")
    p.add_argument("--model-dir", default=None)
    p.add_argument(
        "--max-wait-ms", type=float, default=None, help="BRUSHPRINT_BATCH_MAX_WAIT_MS for both (default: the service's)"
    )
    args = p.parse_args(argv)
    C.ort_providers(args.providers)  # fail early when CUDA is asked for but absent
    duration = args.duration or (4.0 if args.quick else 20.0)
    clients = C.parse_sizes(args.clients)
    routes = (args.routes or ("/v1/compare" if args.quick else "/v1/compare,/v1/verify")).split(",")
    report = C.Report("http_e2e", "HTTP end to end: micro-batching on vs off", C.command_line(), args.quick)

    pool = C.make_images(POOL, seed=1)
    portfolio = C.make_images(PORTFOLIO, seed=2)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp, contextlib.ExitStack() as stack:
        model_dir, which = C.resolve_model_dir(args.model_dir, Path(tmp), build=not args.quick)
        # both servers run side by side (the idle one costs nothing) and are measured in ABBA slices, so a
        # change in background load during the run falls on batching on and off alike
        servers = {}
        for mode, max_size in (("on", 16), ("off", 1)):
            env = {"BRUSHPRINT_BATCH_MAX_SIZE": str(max_size), "BRUSHPRINT_PROVIDERS": args.providers}
            # the pool repeats pictures: without the embedding cache every request embeds (bench.cache_cost)
            env["BRUSHPRINT_EMBEDDING_CACHE_MB"] = "0"
            if args.max_wait_ms is not None:
                env["BRUSHPRINT_BATCH_MAX_WAIT_MS"] = str(args.max_wait_ms)
            servers[mode] = stack.enter_context(C.Server(model_dir, Path(tmp) / f"data-{mode}", env))
            servers[mode].require_provider(args.providers)
            if "/v1/verify" in routes:
                enrol(servers[mode].url, portfolio)
        provider = servers["on"].provider
        for route in routes:
            for n in clients:
                parts: dict[str, list[dict]] = {"on": [], "off": []}
                for mode in ("on", "off", "off", "on"):
                    parts[mode].append(asyncio.run(drive(servers[mode].url, route, pool, n, duration / 2)))
                for mode in parts:
                    results[(route, n, mode)] = summarise(parts[mode])
        for mode, server in servers.items():
            results[("batch", mode)] = batch_sizes(server.url)

    rows, data, head = [], {}, None
    for route in routes:
        for n in clients:
            on, off = results[(route, n, "on")], results[(route, n, "off")]
            thr = C.ratio(on["rps"], off["rps"])
            p99r = C.ratio(on["p99_ms"], off["p99_ms"])
            rows.append(
                [
                    route,
                    n,
                    C.fmt(off["rps"], 1),
                    f"{C.fmt(off['p50_ms'], 1)} / {C.fmt(off['p99_ms'], 1)}",
                    C.fmt(on["rps"], 1),
                    f"{C.fmt(on['p50_ms'], 1)} / {C.fmt(on['p99_ms'], 1)}",
                    f"**{thr:.2f}×**",
                    f"{p99r:.2f}×",
                    _errors(on, off),
                ]
            )
            data[f"{route} {n}"] = {"on": on, "off": off, "throughput_ratio": thr, "p99_ratio": p99r}
            if n == max(clients) and head is None:
                head = (route, n, thr, p99r)
            if n == 16:
                report.target(f"{route}, 16 clients: batching ≥ 1.8× throughput", f"{thr:.2f}×", thr >= 1.8)
                report.target(f"{route}, 16 clients: p99 with batching ≤ 2× without", f"{p99r:.2f}×", p99r <= 2.0)
    report.table(
        f"Closed-loop clients, {duration:.0f} s per cell; latency p50 / p99 in ms; ratio = batching on ÷ off",
        [
            "route",
            "clients",
            "off req/s",
            "off p50 / p99",
            "on req/s",
            "on p50 / p99",
            "throughput ×",
            "p99 ×",
            "non-200",
        ],
        rows,
    )
    report.data = {
        "model": which,
        "provider": provider,
        "duration_s": duration,
        "cells": data,
        "mean_batch": {"on": results[("batch", "on")], "off": results[("batch", "off")]},
    }
    wait = f"{args.max_wait_ms:g} ms (--max-wait-ms)" if args.max_wait_ms is not None else "the service's default"
    report.note(
        f"Model: {which}; the service ran on {provider}; batch max wait: {wait}; rate limiting off for the benchmark."
    )
    report.note(
        f"Mean backbone batch size (from /metrics): on {results[('batch', 'on')]}, off {results[('batch', 'off')]}. "
        "Requests use 256×256 JPEGs from a pool of 48; /verify against a portfolio of "
        f"{PORTFOLIO} works enrolled over HTTP. Client and server share the machine's cores."
    )
    route, n, thr, p99r = head
    report.headline = (
        f"{route} at {n} clients: batching gives {thr:.2f}× throughput (target ≥ 1.8×), p99 {p99r:.2f}× "
        f"(target ≤ 2×) [{provider}]"
    )
    report.emit(args.json)
    return 0


def _errors(on: dict, off: dict) -> str:
    bad = {f"{m}:{c}": k for m, r in (("on", on), ("off", off)) for c, k in r["codes"].items() if c != 200}
    return ", ".join(f"{k}×{v}" for k, v in bad.items()) or "0"


if __name__ == "__main__":
    sys.exit(main())
