"""The multi-crop embedding's cost against the old single-crop one, side by side in one run on one backbone.onnx.

The model under test (by default models/default: shorter side to 672, a 4×4 grid of 224-px crops, per-crop
features L2-normalised and averaged; `--model-dir models/fast`: 4×4 crops of 128 px at shorter side 384 on the
int8 backbone) is measured against the OLD recipe, the one that shipped before the multi-crop one: one 224-px
centre crop through the fp32 backbone of `--baseline-dir` (default models/default, else the model under test) —
a temporary model directory with that model's ONNX files (so the card's hashes stay valid), preprocessing grid
[1, 1], crop 224 and `resize_shorter` 224. Three
measurements, each alternating the recipes (round-robin or ABBA halves) so background load falls on both:

1. per picture at batch 1: decode + `model_inputs` + backbone + `combine`, median of N, with the stages apart;
2. `Scorer.compare` in process, closed loop with 16 concurrent clients for a fixed time: pictures/s for old vs
   new (both at `batch_max_size` 64), and for the new recipe micro-batching crops across requests
   (`batch_max_size` 64) vs not (16: one picture's crops per backbone run), and 32 between; the service's
   default on the provider (service/config.py: 16 on CPU, 64 on CUDA) is marked;
3. `/v1/compare` over real HTTP (`python -m service` on loopback, one server per recipe, the service's default
   batching), old vs new, at 1 client (against the target "new ≤ 2× old") and 16: p50, p99, req/s; and the
   target "pictures/s at 16 clients ≥ 1/3 of the old recipe's" from 2.

With `--providers cuda` (or BRUSHPRINT_PROVIDERS=cuda) every part runs on CUDA, the servers included, and the
run stops with the reason when this onnxruntime cannot run CUDA.

Pictures are real-size 800×600 JPEGs (bench/pictures.py), so decoding and resizing cost what they do in use.

    python -m bench.recipe_cost [--quick] [--duration S] [--clients 16] [--http-clients 1,16] [--repeat N]
                                [--model-dir DIR] [--baseline-dir DIR] [--providers cuda]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common as C
from bench.modelcopy import recipe_copy, single_crop_copy
from bench.pictures import painting_jpeg
from contract.card import load_card

TARGET_P50_RATIO = 2.0
TARGET_THROUGHPUT_SHARE = 1 / 3  # new pictures/s ÷ old, at 16 clients
OLD_CROP = 224  # the single-crop recipe: one centre crop at the backbone's ImageNet size
PICTURE_SIZE = (800, 600)
POOL = 8  # distinct pictures; http_e2e.request_for pairs i with 7i+3 (mod 8), never itself
BATCH_ON, BATCH_OFF, BATCH_MID = 64, 16, 32  # crops: 4 pictures, 1 picture (off), 2 pictures


def pictures(n: int, seed: int = 0) -> list[bytes]:
    return [painting_jpeg(seed * 1000 + i % 5, i, PICTURE_SIZE) for i in range(n)]


# --- 1. per picture at batch 1 ------------------------------------------------------------------------------------


def per_picture(models: dict, pool: list[bytes], repeat: int, budget_s: float) -> dict[str, dict[str, C.Stats]]:
    """Stage timings of one picture at a time, the recipes alternating picture by picture."""
    from contract.decode import ImageLimits, decode_bytes

    limits = ImageLimits()
    stages = ("decode", "model_inputs", "backbone_combine", "total")
    samples: dict[str, dict[str, list[float]]] = {k: {s: [] for s in stages} for k in models}

    def one(model, data: bytes) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        image = decode_bytes(data, limits).image
        t1 = time.perf_counter()
        x = model.model_inputs(image)
        t2 = time.perf_counter()
        model.embed_pictures([x])
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    for model in models.values():  # warm-up: first runs allocate
        one(model, pool[0])
    start = time.perf_counter()
    for r in range(repeat):
        for key, model in models.items():
            dec, inp, emb = one(model, pool[r % len(pool)])
            for s, v in zip(stages, (dec, inp, emb, dec + inp + emb), strict=True):
                samples[key][s].append(v)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {k: {s: C.Stats.of(v) for s, v in st.items()} for k, st in samples.items()}


# --- 2. Scorer.compare throughput ---------------------------------------------------------------------------------


async def drive_engine(runtime, pool: list[bytes], clients: int, duration: float) -> dict:
    """Closed loop: `clients` tasks each call `runtime.compare` again as soon as the last answer arrives.

    The clients run for `duration`, extended (to 3× at most) until 3 backbone runs have ended. Throughput is
    counted in crops of the backbone runs that ended after the first one (by then the queue has filled): a
    compare of the new recipe at 16 clients waits for the crops of ~30 pictures ahead of it, so counting answered
    compares over a window of seconds would mostly measure where the window cuts the queue. At the end the
    clients are cancelled (their queued crops cost no model time) and the backbone run in progress is waited
    for, so the next cell starts on an idle runtime.
    """
    crops_run: list[tuple[float, int]] = []  # (when the backbone run ended, crops in it)
    runtime.embedder.batcher.on_batch = lambda size, _s: crops_run.append((time.perf_counter(), size))
    await runtime.scorer.compare(pool[0], pool[1])  # warm-up: the batcher's loop and thread up
    crops_run.clear()
    latencies: list[float] = []
    t_start = time.perf_counter()

    async def worker(w: int) -> None:
        i = w
        while True:
            a, b = pool[i % len(pool)], pool[(i * 7 + 3) % len(pool)]
            t0 = time.perf_counter()
            await runtime.scorer.compare(a, b)
            latencies.append(time.perf_counter() - t0)
            i += clients

    tasks = [asyncio.create_task(worker(w)) for w in range(clients)]
    await asyncio.wait(tasks, timeout=duration)  # returns early only when a worker failed
    # at least 3 backbone runs, so 2 are counted after the first, however slow a run is (a bounded extension)
    while len(crops_run) < 3 and time.perf_counter() < t_start + 3 * duration and not any(t.done() for t in tasks):
        await asyncio.sleep(0.02)
    stop = time.perf_counter()
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if errors:
        raise RuntimeError(f"Scorer.compare failed during the benchmark: {errors[0]!r}") from errors[0]
    # counted from the end of the first backbone run, once the queue has filled: runs ending after it, by `stop`
    ends = [at for at, _ in crops_run if at <= stop]
    first = ends[0] if ends else stop
    runs = [size for at, size in crops_run if first < at <= stop]
    # one crop submitted behind the run in progress: when it is answered, the runtime is idle again
    tiny = runtime.bundle.model.model_inputs(_small_image(runtime.bundle.model))[:1]
    await runtime.embedder.batcher.submit((runtime.bundle.model, tiny))
    return {"latencies": latencies, "crops_per_run": runs, "counted_s": stop - first, "elapsed_s": stop - t_start}


def _small_image(model):
    from PIL import Image

    h, w = model.card.backbone.preprocessing.crop
    return Image.new("RGB", (w, h), (128, 128, 128))


async def engine_cells(
    models: dict,
    cells: list[tuple[str, str, int]],
    pool: list[bytes],
    clients: int,
    duration: float,
    tmp: Path,
    halves: bool = True,
) -> dict[str, dict]:
    """Each cell (label, recipe, batch_max_size) gets its own runtime; cells run in ABBA halves of `duration`
    (or, without `halves`, once each for all of it: a half of a quick run would hold barely one backbone run)."""
    from service.config import Settings
    from service.serving.runtime import Runtime

    engines, crops = {}, {}
    for label, recipe, max_size in cells:
        crops[label] = models[recipe].card.backbone.preprocessing.n_crops
        settings = Settings(
            data_dir=tmp / f"runtime-{label}",
            gpu_index=False,
            batch_max_size=max_size,
            rate_limit_per_minute=0,
            embedding_cache_mb=0,  # the pool repeats pictures: every compare embeds both (bench.cache_cost)
        )
        engines[label] = Runtime.build(models[recipe], settings)
    parts: dict[str, list[dict]] = {label: [] for label, _, _ in cells}
    try:
        order = [label for label, _, _ in cells]
        for label in order + order[::-1] if halves else order:
            await engines[label].start()
            parts[label].append(await drive_engine(engines[label], pool, clients, duration / 2 if halves else duration))
            await engines[label].stop()
    finally:
        for runtime in engines.values():
            with contextlib.suppress(Exception):
                await runtime.stop()
            runtime.close()
    out = {}
    for label, ps in parts.items():
        lat = [x for p in ps for x in p["latencies"]]
        runs = [x for p in ps for x in p["crops_per_run"]]
        elapsed = sum(p["elapsed_s"] for p in ps)
        counted = sum(p["counted_s"] for p in ps)
        stats = C.Stats.of(lat) if lat else C.Stats(0, float("nan"), float("nan"), float("nan"))
        out[label] = {
            "compares": len(lat),
            "crops": int(sum(runs)),
            "pictures_per_s": sum(runs) / crops[label] / counted if counted > 0 else float("nan"),
            "counted_s": counted,
            "compares_per_s": len(lat) / elapsed,
            "elapsed_s": elapsed,
            "mean_crops_per_run": float(np.mean(runs)) if runs else float("nan"),
            **vars(stats),
        }
    return out


# --- 3. /v1/compare over HTTP, 1 client ---------------------------------------------------------------------------


def http_p50(
    dirs: dict[str, Path], pool: list[bytes], duration: float, providers: str, tmp: Path, clients: list[int]
) -> dict:
    """/v1/compare over HTTP per recipe and number of clients (`http_e2e.drive`: closed loop, the queue full),
    each server with the service's own batching for its provider; {(recipe, clients): summary}."""
    from bench.http_e2e import drive, summarise

    with contextlib.ExitStack() as stack:
        servers = {}
        for key, d in dirs.items():
            env = {"BRUSHPRINT_PROVIDERS": providers, "BRUSHPRINT_EMBEDDING_CACHE_MB": "0"}  # as above
            servers[key] = stack.enter_context(C.Server(d, tmp / f"http-{key}", env))
            servers[key].require_provider(providers)
        keys = list(dirs)
        out: dict = {}
        for n in clients:
            parts: dict[str, list[dict]] = {k: [] for k in dirs}
            for key in keys + keys[::-1]:
                parts[key].append(asyncio.run(drive(servers[key].url, "/v1/compare", pool, n, duration / 2)))
            for key in keys:
                out[(key, n)] = summarise(parts[key])
        provider = servers[keys[0]].provider
        batch = servers[keys[0]].ready.get("batch_max_size")
    for (k, n), s in out.items():
        bad = {c: m for c, m in s["codes"].items() if c != 200}
        if bad or not s["ok"]:
            raise RuntimeError(f"/v1/compare on the {k} recipe at {n} clients answered {s['codes']}")
    out["provider"], out["batch_max_size"] = provider, batch
    return out


# --- the report ---------------------------------------------------------------------------------------------------


def old_recipe(model_dir: Path, out: Path) -> Path:
    """The single-crop recipe on `model_dir`'s files: one 224-px centre crop (a model whose crops are smaller has a
    backbone of free height and width, training/backbone/onnxgraph.py `free_spatial_dims`)."""
    if load_card(model_dir, verify_files=False).backbone.preprocessing.crop == (OLD_CROP, OLD_CROP):
        return single_crop_copy(model_dir, out)
    return recipe_copy(
        single_crop_copy(model_dir, out.with_name(out.name + "-1crop")),
        out,
        crop=(OLD_CROP, OLD_CROP),
        resize_shorter=OLD_CROP,
    )


def _recipe(model) -> str:
    p = model.card.backbone.preprocessing
    return f"shorter side {p.resize_shorter}, {p.grid[0]}×{p.grid[1]} crops of {p.crop[0]} px"


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=None)
    p.add_argument(
        "--baseline-dir", default=None, help="the single-crop recipe's backbone (default models/default when present)"
    )
    p.add_argument("--repeat", type=int, default=None, help="pictures per recipe at batch 1 (default 30; quick 6)")
    p.add_argument("--duration", type=float, default=None, help="seconds per throughput cell (default 20; quick 3)")
    p.add_argument("--http-duration", type=float, default=None, help="seconds per HTTP recipe (default 30; quick 4)")
    p.add_argument("--clients", type=int, default=16, help="concurrent Scorer.compare clients (default 16)")
    p.add_argument(
        "--http-clients", default=None, help="concurrent clients of /v1/compare over HTTP (default 1,16; quick 1)"
    )
    args = p.parse_args(argv)
    C.ort_providers(args.providers)  # fail early when CUDA is asked for but absent
    repeat = args.repeat or (6 if args.quick else 30)
    duration = args.duration or (3.0 if args.quick else 20.0)
    http_duration = args.http_duration or (4.0 if args.quick else 30.0)
    http_clients = C.parse_sizes(args.http_clients or ("1" if args.quick else "1,16"))
    if 1 not in http_clients:
        p.error("--http-clients must include 1 (the p50 target is at 1 client)")
    report = C.Report(
        "recipe_cost", "Embedding recipe: 4×4 multi-crop vs the old single crop", C.command_line(), args.quick
    )

    pool = pictures(POOL, seed=1)
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir, which = C.resolve_model_dir(args.model_dir, tmp, build=not args.quick)
        base = Path(args.baseline_dir) if args.baseline_dir else model_dir
        if args.baseline_dir is None and (C.DEFAULT_MODEL_DIR / "model.json").is_file():
            base = C.DEFAULT_MODEL_DIR
        dirs = {"old": old_recipe(base, tmp / "old-recipe"), "new": Path(model_dir)}
        models = {k: C.load_model(d, args.providers) for k, d in dirs.items()}
        crops = {k: m.card.backbone.preprocessing.n_crops for k, m in models.items()}
        recipes = {k: _recipe(m) for k, m in models.items()}
        if crops["new"] == 1:
            report.note("The model under test is itself single-crop: old and new are the same recipe here.")

        stage = per_picture(models, pool, repeat, budget_s=6.0 if args.quick else 120.0)
        cells = [
            (f"old, batch {BATCH_ON}", "old", BATCH_ON),
            (f"new, batch {BATCH_ON}", "new", BATCH_ON),
            (f"new, batch {BATCH_OFF}", "new", BATCH_OFF),
        ]
        if not args.quick:
            cells.append((f"new, batch {BATCH_MID}", "new", BATCH_MID))
        thr = asyncio.run(engine_cells(models, cells, pool, args.clients, duration, tmp, halves=not args.quick))
        provider = models["new"].providers[0]
        del models
        http = http_p50(dirs, pool, http_duration, args.providers, tmp, http_clients)

    # 1. per picture
    names = {
        "decode": "decode",
        "model_inputs": "resize + crops (model_inputs)",
        "backbone_combine": "backbone + combine",
    }
    rows = []
    for s in ("decode", "model_inputs", "backbone_combine", "total"):
        o, n = stage["old"][s].p50_ms, stage["new"][s].p50_ms
        label = "**per picture**" if s == "total" else names[s]
        rows.append(
            [label, C.fmt(o), C.fmt(n), f"**{C.ratio(n, o):.1f}×**" if s == "total" else f"{C.ratio(n, o):.1f}×"]
        )
    report.table(
        f"Per picture at batch 1 (800×600 JPEG): median ms over {stage['old']['total'].n} pictures per recipe; "
        "ratio = new ÷ old",
        ["stage", f"old ms: {recipes['old']}", f"new ms: {recipes['new']}", "new ÷ old"],
        rows,
    )
    per_pic_ratio = C.ratio(stage["new"]["total"].p50_ms, stage["old"]["total"].p50_ms)

    # 2. throughput
    labels = [c[0] for c in cells]
    old_label, on_label, off_label = labels[:3]
    from bench.http_e2e import default_batch

    default = default_batch(provider)
    rows = []
    for label, recipe, size in cells:
        t = thr[label]
        rows.append(
            [
                label + (" (the default)" if recipe == "new" and size == default else ""),
                C.fmt(t["pictures_per_s"], 1),
                f"{C.fmt(t['p50_ms'], 0)} / {C.fmt(t['p99_ms'], 0)}",
                C.fmt(t["mean_crops_per_run"], 1),
                t["compares"],
            ]
        )
    report.table(
        f"Scorer.compare in process, {args.clients} concurrent clients, {duration:.0f} s per cell"
        + (" (one slice each)" if args.quick else " (ABBA halves)"),
        ["recipe, batch_max_size (crops)", "pictures/s", "compare p50 / p99 ms", "crops per backbone run", "compares"],
        rows,
    )
    old_new = C.ratio(thr[old_label]["pictures_per_s"], thr[on_label]["pictures_per_s"])
    batching = C.ratio(thr[on_label]["pictures_per_s"], thr[off_label]["pictures_per_s"])
    ratio_rows = [
        [f"old ÷ new pictures/s (both batch {BATCH_ON})", f"**{old_new:.1f}×**"],
        [f"new: crop micro-batching on ({BATCH_ON}) ÷ off ({BATCH_OFF})", f"**{batching:.2f}×**"],
    ]
    batching_mid = None
    if len(labels) > 3:
        batching_mid = C.ratio(thr[labels[3]]["pictures_per_s"], thr[off_label]["pictures_per_s"])
        ratio_rows.append([f"new: {BATCH_MID} ÷ off ({BATCH_OFF})", f"{batching_mid:.2f}×"])
    report.table(
        f"Throughput ratios at {args.clients} clients",
        ["comparison", "ratio"],
        ratio_rows,
    )

    # 3. HTTP p50 at 1 client (the target) and more
    o, n = http[("old", 1)], http[("new", 1)]
    p50_ratio = C.ratio(n["p50_ms"], o["p50_ms"])
    rows = []
    for k in http_clients:
        ok, nk = http[("old", k)], http[("new", k)]
        ratio_k = C.ratio(nk["p50_ms"], ok["p50_ms"])
        verdict = ("met" if ratio_k <= TARGET_P50_RATIO else "**missed**") if k == 1 else ""
        rows += [
            [k, "old (1 crop)", ok["ok"], C.fmt(ok["rps"], 2), C.fmt(ok["p50_ms"]), C.fmt(ok["p99_ms"]), "", ""],
            [
                k,
                f"new ({crops['new']} crops)",
                nk["ok"],
                C.fmt(nk["rps"], 2),
                C.fmt(nk["p50_ms"]),
                C.fmt(nk["p99_ms"]),
                f"**{ratio_k:.1f}×**",
                verdict,
            ],
        ]
    report.table(
        f"/v1/compare over HTTP (python -m service on loopback, batch_max_size {http['batch_max_size']}: the "
        f"service's default on {http['provider']}), {http_duration:.0f} s counted per recipe and clients (ABBA halves)",
        [
            "clients",
            "recipe",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "new ÷ old p50",
            f"target ≤ {TARGET_P50_RATIO:g}× (1 client)",
        ],
        rows,
    )
    report.target(
        f"/v1/compare p50 at 1 client, new recipe ≤ {TARGET_P50_RATIO:g}× the single-crop one",
        f"{p50_ratio:.1f}× ({C.fmt(n['p50_ms'], 0)} vs {C.fmt(o['p50_ms'], 0)} ms)",
        p50_ratio <= TARGET_P50_RATIO,
    )
    report.target(
        f"pictures/s at {args.clients} clients, new recipe ≥ 1/3 of the single-crop one (both batch {BATCH_ON})",
        f"1/{old_new:.1f}",
        old_new <= 1 / TARGET_THROUGHPUT_SHARE,
    )
    report.note(
        f"Model: {which}. Old recipe: {C.shown(base)}'s card and ONNX files with preprocessing grid [1, 1], crop "
        f"{OLD_CROP} and resize_shorter {OLD_CROP} (one centre crop), written to a temporary directory. "
        f"ONNX Runtime provider: {provider} (session options from the service's settings); HTTP servers on "
        f"{http['provider']}."
    )
    report.note(
        "Pictures: 8 distinct 800×600 JPEGs (bench/pictures.py). pictures/s = crops of the backbone runs that "
        "ended within the cell's time after its first run (the MicroBatcher's on_batch hook) ÷ crops per picture. "
        "At 16 clients a new-recipe compare queues behind ~30 pictures, so few compares end inside a window of "
        "seconds and their p50/p99 rest on few samples. 'crops per backbone run' is the mean size of those runs. "
        "Clients run on the runtime's cores."
    )
    report.data = {
        "model": which,
        "provider": provider,
        "crops": crops,
        "per_picture": {k: {s: vars(v) for s, v in st.items()} for k, st in stage.items()},
        "per_picture_ratio": per_pic_ratio,
        "throughput": {"clients": args.clients, "duration_s": duration, "cells": thr},
        "old_over_new_throughput": old_new,
        "batching_gain": batching,
        "batching_gain_mid": batching_mid,
        "default_batch_max_size": default,
        "http": {
            "duration_s": http_duration,
            "old": o,
            "new": n,
            "provider": http["provider"],
            "batch_max_size": http["batch_max_size"],
            "clients": {str(k): {"old": http[("old", k)], "new": http[("new", k)]} for k in http_clients},
        },
        "http_p50_ratio": p50_ratio,
    }
    report.headline = (
        f"/v1/compare p50 at 1 client over HTTP: {crops['new']}-crop recipe {p50_ratio:.1f}× the single crop "
        f"(target ≤ {TARGET_P50_RATIO:g}×: {'met' if p50_ratio <= TARGET_P50_RATIO else 'missed'}); per picture "
        f"{per_pic_ratio:.1f}×; {args.clients} clients: {old_new:.1f}× fewer pictures/s, crop micro-batching "
        f"{batching:.2f}×"
        + "".join(
            f"; HTTP p50 at {k} clients {C.fmt(http[('new', k)]['p50_ms'], 0)} ms" for k in http_clients if k != 1
        )
        + f" [{provider}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
