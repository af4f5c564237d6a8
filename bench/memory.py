"""Memory: the server's resident set size (RSS) idle, after enrolling 10,000 references, and under load; and the
onnxruntime session options (settings `cpu_mem_arena`, `graph_optimization`) side by side.

Starts `python -m service` (temporary data dir) and reads its RSS from /proc: right after start; once warm
(every route run and full backbone batches, so onnxruntime's arenas have grown); after enrolling N references
over HTTP (real uploads through the backbone, the store and the faiss index: one artist of 20 small JPEGs per
request); and as peak and end values while 16 clients mix /compare, /verify and /identify for a fixed time.
For scale, the raw float32 vectors of the references are shown beside the growth.

Then one server per session-option variant (the service's defaults, the CPU arena the other way, each lower
graph optimisation level), all running side by side: RSS idle and warm after the same warm-up, answers/s and peak
RSS under the same mixed load in slices taken in turn and back (ABBA); and, in this process, one picture's backbone
run under each variant, the variants taking turns — so memory and speed of each are read side by side from one
run. Bounded: fixed sizes and durations; the servers are always stopped.

    python -m bench.memory [--quick] [--references 10000] [--duration S] [--variants default,arena-off,basic]
                           [--model-dir DIR] [--providers cuda]
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import common as C
from bench import http_e2e as E

PER_REQUEST = 32  # the service's default max_files_per_request
ARTIST_WORKS = 20  # references per enrolled artist
WARMUP_REFS = 40
TARGET_WARM_MIB = 800  # issue 16, the shipped model on CPU


def enrol_many(url: str, n: int, seed: int = 7, prefix: str = "mem") -> float:
    """Enrol n distinct 96×96 JPEGs, ARTIST_WORKS per artist; returns the seconds it took (96 px: above the quality
    floor of every shipped model; 64-px ones sit on models/fast's floor and some are refused)."""
    import httpx

    h = {"X-API-Key": C.ADMIN_KEY}
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers=h, timeout=300) as c:
        done = 0
        a = 0
        while done < n:
            artist = f"{prefix}-{a:05d}"
            r = c.post("/v1/artists", json={"id": artist, "name": f"Memory artist {a}"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"create artist: {r.status_code} {r.text}")
            want = min(ARTIST_WORKS, n - done)
            for start in range(0, want, PER_REQUEST):
                k = min(PER_REQUEST, want - start)
                images = C.make_images(k, size=96, seed=seed * 1_000_003 + done + start)
                files = [("image", (f"{done + start + i}.jpg", b, "image/jpeg")) for i, b in enumerate(images)]
                # synthetic pictures the shipped model may take for one painting twice (409 same_painting)
                r = c.post(f"/v1/artists/{artist}/works", files=files, data={"allow_duplicate": "true"})
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"enrol works: {r.status_code} {r.text}")
            done += want
            a += 1
    return time.perf_counter() - t0


class Sampler:
    """RSS of a process every `period` seconds in a thread, for peak-under-load figures."""

    def __init__(self, pid: int, period: float = 0.25):
        self.pid, self.period = pid, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(C.rss_mib(self.pid))
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def mixed_load(url: str, pool: list[bytes], artist: str, clients: int, duration: float) -> dict:
    import httpx

    routes = ("/v1/compare", "/v1/verify", "/v1/identify")
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": C.ADMIN_KEY}, timeout=60) as client:
        stop = time.perf_counter() + duration

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < stop:
                route = routes[i % 3]
                q = pool[i % len(pool)]
                if route == "/v1/compare":
                    files = [("image_a", ("a.jpg", q, "image/jpeg")), ("image_b", ("b.jpg", pool[-1], "image/jpeg"))]
                    data = {}
                else:
                    files = [("image", ("q.jpg", q, "image/jpeg"))]
                    data = {"artist_id": artist} if route == "/v1/verify" else {"k": "5"}
                r = await client.post(route, files=files, data=data)
                key = f"{route} {r.status_code}"
                counts[key] = counts.get(key, 0) + 1
                i += clients

        await asyncio.gather(*(worker(w) for w in range(clients)))
    return counts


# onnxruntime session options side by side: name → the settings that differ from the service's defaults
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "arena-off": {"cpu_mem_arena": False},
    "arena-on": {"cpu_mem_arena": True},
    "extended": {"graph_optimization": "extended"},
    "basic": {"graph_optimization": "basic"},
    "disabled": {"graph_optimization": "disabled"},
    "batch-16": {"batch_max_size": 16},
    "batch-64": {"batch_max_size": 64},
}
SESSION_FIELDS = ("intra_op_threads", "graph_optimization", "cpu_mem_arena")


def variant_env(overrides: dict[str, object]) -> dict[str, str]:
    """The BRUSHPRINT_* environment that gives a server these settings."""
    return {f"BRUSHPRINT_{k.upper()}": str(v).lower() for k, v in overrides.items()}


def variant_session(overrides: dict[str, object]):
    """The SessionConfig a server with the service's defaults and these settings makes its sessions with."""
    import dataclasses

    from service.config import Settings
    from service.serving.model import SessionConfig

    f = Settings.model_fields
    default = SessionConfig(*(f[name].default for name in SESSION_FIELDS))
    return dataclasses.replace(default, **{k: v for k, v in overrides.items() if k in SESSION_FIELDS})


def variant_batch(overrides: dict[str, object], provider: str) -> int:
    """The batch_max_size (crops) a server with these settings runs on `provider`."""
    from service.config import Settings

    wanted = overrides.get("batch_max_size", Settings.model_fields["batch_max_size"].default)
    return Settings.model_construct(batch_max_size=wanted).for_providers([provider]).batch_max_size


def warm_up(url: str, pool: list[bytes], clients: int) -> None:
    """Every route once and full backbone batches, so the sessions' memory arenas have grown to their working size:
    the portfolio of http_e2e, WARMUP_REFS more references, and `clients` clients of mixed load for 2 s."""
    E.enrol(url, C.make_images(E.PORTFOLIO, seed=2))
    enrol_many(url, WARMUP_REFS, seed=3, prefix="warm")
    asyncio.run(mixed_load(url, pool, E.ARTIST, clients, 2.0))


def backbone_ms(model_dir: Path, providers: str, variants: dict[str, dict[str, object]], repeat: int) -> dict:
    """Per picture, one full backbone run of each variant (as many whole pictures' crops as its batch_max_size
    holds, at least one picture) in this process, the variants taking turns run by run: Stats of a run divided
    by the pictures in it."""
    import numpy as np

    from service.serving.model import Model

    models = {k: Model.load(model_dir, providers, session=variant_session(v)) for k, v in variants.items()}
    first = next(iter(models.values()))
    pre, provider = first.card.backbone.preprocessing, first.providers[0]
    pictures = {k: max(1, variant_batch(v, provider) // pre.n_crops) for k, v in variants.items()}
    rng = np.random.default_rng(0)
    xs = {k: rng.normal(0, 1, (n * pre.n_crops, *pre.crop, 3)).astype(np.float32) for k, n in pictures.items()}
    runs = {k: (lambda m=m, x=xs[k]: m.embed(x)) for k, m in models.items()}
    stats = C.measure_interleaved(runs, repeat, warmup=2)
    return {
        k: C.Stats(st.n, st.p50_ms / pictures[k], st.p99_ms / pictures[k], st.mean_ms / pictures[k])
        for k, st in stats.items()
    }


def compare_variants(
    model_dir: Path, tmp: Path, providers: str, names: list[str], pool: list[bytes], clients: int, duration: float
) -> dict[str, dict]:
    """Each variant's own server, side by side: RSS idle and warm (the same warm-up as the main run), then mixed
    load in slices, the variants in turn and back (ABBA): answers/s and peak RSS."""
    out: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        servers = {}
        for name in names:
            env = {"BRUSHPRINT_PROVIDERS": providers, **variant_env(VARIANTS[name])}
            servers[name] = stack.enter_context(C.Server(model_dir, tmp / f"variant-{name}", env))
            servers[name].require_provider(providers)
        time.sleep(1.0)
        for name, server in servers.items():
            out[name] = {"idle": server.rss_mib(), "answers": 0, "seconds": 0.0, "peak": 0.0}
        for name, server in servers.items():  # one at a time: a warm-up is the same work for each
            warm_up(server.url, pool, clients)
            time.sleep(1.0)
            out[name]["warm"] = server.rss_mib()
        for name in names + names[::-1]:
            server = servers[name]
            with Sampler(server.pid) as sampler:
                t0 = time.perf_counter()
                counts = asyncio.run(mixed_load(server.url, pool, E.ARTIST, clients, duration / 2))
                out[name]["seconds"] += time.perf_counter() - t0
            out[name]["answers"] += sum(v for k, v in counts.items() if k.endswith(" 200"))
            out[name]["peak"] = max([out[name]["peak"], *sampler.samples])
    return out


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--references", type=int, default=None, help="references to enrol (default 10000; quick 300)")
    p.add_argument("--duration", type=float, default=None, help="seconds of mixed load (default 30; quick 5)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--model-dir", default=None)
    p.add_argument(
        "--variants",
        default=None,
        help=f"onnxruntime session options to compare side by side, of {','.join(VARIANTS)}; 'none' for none "
        "(default: the service's defaults, the arena the other way, and each lower optimisation level; quick: none)",
    )
    args = p.parse_args(argv)
    C.ort_providers(args.providers)
    n = args.references or (300 if args.quick else 10_000)
    duration = args.duration or (5.0 if args.quick else 30.0)
    from service.config import CPU_MEM_ARENA_DEFAULT

    other_arena = "arena-on" if not CPU_MEM_ARENA_DEFAULT else "arena-off"
    wanted = args.variants or ("none" if args.quick else f"default,{other_arena},extended,basic,disabled")
    variants = [] if wanted == "none" else wanted.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown --variants {unknown}: choose from {', '.join(VARIANTS)}")
    report = C.Report("memory", "Memory: server RSS", C.command_line(), args.quick)

    pool = C.make_images(24, seed=11)
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        model_dir, which = C.resolve_model_dir(args.model_dir, Path(tmp), build=not args.quick)
        with C.Server(model_dir, Path(tmp) / "data", {"BRUSHPRINT_PROVIDERS": args.providers}) as server:
            server.require_provider(args.providers)
            provider = server.provider
            time.sleep(1.0)
            idle = server.rss_mib()
            # the sessions' memory arenas grown to their working size before the references are counted
            warm_up(server.url, pool, args.clients)
            time.sleep(1.0)
            warm = server.rss_mib()
            enrol_s = enrol_many(server.url, n)
            time.sleep(1.0)
            enrolled = server.rss_mib()
            with Sampler(server.pid) as sampler:
                counts = asyncio.run(mixed_load(server.url, pool, E.ARTIST, args.clients, duration))
            end = server.rss_mib()
            peak = max(sampler.samples + [end])
        side = compare_variants(model_dir, Path(tmp), args.providers, variants, pool, args.clients, duration)
        speed = backbone_ms(model_dir, args.providers, {v: VARIANTS[v] for v in variants}, 30) if variants else {}

    from contract.card import load_card

    card = load_card(model_dir, verify_files=False)
    ref_dim = card.head.projection.output_dim if card.head.projection else None
    raw = n * 4 * (card.backbone.embedding_dim + (ref_dim or 0)) / 2**20
    warm_refs = E.PORTFOLIO + WARMUP_REFS
    rows = [
        ["idle, just started", C.fmt(idle, 0), "–"],
        [
            f"warm: {warm_refs} references enrolled, every route run, {args.clients} clients for 2 s",
            C.fmt(warm, 0),
            C.fmt(warm - idle, 0),
        ],
        [f"after enrolling {n:,} more references over HTTP", C.fmt(enrolled, 0), C.fmt(enrolled - warm, 0)],
        [f"under load: peak ({args.clients} clients, {duration:.0f} s)", C.fmt(peak, 0), C.fmt(peak - enrolled, 0)],
        ["under load: end", C.fmt(end, 0), C.fmt(end - enrolled, 0)],
    ]
    report.table("Server RSS (MiB) and the change from the row above", ["state", "RSS MiB", "Δ MiB"], rows)
    ok = sum(v for k, v in counts.items() if k.endswith(" 200"))
    report.note(f"Model: {which}; the service ran on {provider}.")
    report.note(
        f"Enrolment: {n:,} distinct 96×96 JPEGs over HTTP, {ARTIST_WORKS} per artist, one artist per request, "
        f"in {enrol_s:.0f} s ({n / enrol_s:.0f} references/s). Their raw float32 vectors (embedding"
        f"{' + projection' if ref_dim else ''}) are {raw:.1f} MiB."
    )
    report.note(f"Mixed load answers: {dict(sorted(counts.items()))} ({ok} OK).")
    report.data = {
        "model": which,
        "references": n,
        "enrol_s": enrol_s,
        "rss_mib": {"idle": idle, "warm": warm, "enrolled": enrolled, "peak_load": peak, "end_load": end},
        "per_reference_kib": (enrolled - warm) * 1024 / n,
        "raw_vectors_mib": raw,
        "load_counts": counts,
    }
    report.note(
        f"Growth per enrolled reference: {(enrolled - warm) * 1024 / n:.1f} KiB of RSS "
        f"(raw vectors: {raw * 1024 / n:.1f} KiB)."
    )
    if variants:
        base = side[variants[0]]
        vrows = []
        for v in variants:
            r, cfg = side[v], variant_session(VARIANTS[v])
            arena = "on" if cfg.cpu_mem_arena else "off"
            vrows.append(
                [
                    f"{v} ({cfg.graph_optimization}, arena {arena}, batch {variant_batch(VARIANTS[v], provider)})",
                    C.fmt(r["idle"], 0),
                    C.fmt(r["warm"], 0),
                    C.fmt(r["warm"] - base["warm"], 0) if v != variants[0] else "–",
                    C.fmt(r["peak"], 0),
                    C.fmt(r["answers"] / r["seconds"], 2),
                    f"{C.fmt(speed[v].p50_ms, 1)} / {C.fmt(speed[v].p99_ms, 1)}",
                    f"{C.ratio(speed[v].p50_ms, speed[variants[0]].p50_ms):.2f}×" if v != variants[0] else "–",
                ]
            )
        report.table(
            f"onnxruntime session options and batch size side by side: RSS (MiB) of a server each, warmed up alike; "
            f"mixed load of {args.clients} clients in ABBA slices ({duration:.0f} s each in all); a full backbone run "
            "per variant in process, the variants taking turns, per picture",
            [
                "variant (graph optimisation, CPU arena, batch_max_size)",
                "idle",
                "warm",
                f"warm Δ vs {variants[0]}",
                "peak under load",
                "answers/s under load",
                "backbone ms per picture p50 / p99",
                f"÷ {variants[0]}",
            ],
            vrows,
        )
        report.data["variants"] = {
            v: {**side[v], "backbone": vars(speed[v]), "settings": VARIANTS[v]} for v in variants
        }
        report.note(
            "Variants: BRUSHPRINT_CPU_MEM_ARENA / BRUSHPRINT_GRAPH_OPTIMIZATION / BRUSHPRINT_BATCH_MAX_SIZE set for "
            "that server only, every other setting the service's default; 'backbone ms per picture' = one "
            "Model.embed of as many whole pictures' crops as the variant's batch_max_size holds, ÷ those pictures, "
            f"{speed[variants[0]].n} runs each."
        )
    if provider == "CPUExecutionProvider":
        report.target(f"warm RSS ≤ {TARGET_WARM_MIB} MiB on CPU", f"{warm:.0f} MiB", warm <= TARGET_WARM_MIB)
    others = "".join(
        f"; {v} warm {side[v]['warm'] - side[variants[0]]['warm']:+.0f} MiB, backbone "
        f"{C.ratio(speed[v].p50_ms, speed[variants[0]].p50_ms):.2f}×"
        for v in variants[1:]
    )
    report.headline = (
        f"RSS idle {idle:.0f} MiB, warm {warm:.0f} MiB, +{n:,} references {enrolled:.0f} MiB "
        f"(+{enrolled - warm:.0f}), peak under load {peak:.0f} MiB{others} [{provider}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
