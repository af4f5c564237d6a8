"""What every benchmark shares: timing with percentiles, the machine's description, ONNX Runtime providers,
the model directory to measure, and a report that prints markdown tables and a one-line headline.

Each script prints its tables, then its headline as the LAST line (so `--quick` runs and CI can grep it),
and with `--json PATH` also writes the report for `bench/run_all.py` to assemble BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.server import ROOT, rss_bytes
from bench.server import Server as ServiceProcess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_MODEL_DIR = ROOT / "models" / "default"


def shown(path: str | Path) -> str:
    """A path as a report shows it: relative to the repository when inside it (the same in every checkout)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


# --- timing ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Latency summary in milliseconds over `n` timed runs (warm-up runs excluded)."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        a = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(len(a), float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean()))


def measure_interleaved(
    fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 1, budget_s: float | None = None
) -> dict[str, Stats]:
    """Time several alternatives round-robin, so load from other processes falls on all of them alike.

    Stops after `repeat` rounds or once `budget_s` is spent, but never below 3 rounds: the budget keeps slow
    cases (the naive path at 10,000 references, Keras at batch 16) from eating the run, while fast ones still
    get enough samples for a meaningful p99.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
        if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {k: Stats.of(v) for k, v in samples.items()}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x): 1.0 is linear growth, 0 constant, 2 quadratic."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def ratio(slow: float, fast: float) -> float:
    return slow / fast if fast > 0 else float("inf")


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def parse_sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


# --- the machine -------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, read from /proc (Linux)."""
    rss = rss_bytes(pid or os.getpid())
    if not rss:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return rss / 2**20


def load_average() -> float | None:
    """1-minute load average: the shared-machine noise a reader should know about."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def limit_threads(n: int | None):
    """Cap BLAS and OpenMP pools (numpy, faiss) at n threads; n=None keeps the libraries' defaults."""
    import contextlib

    if not n:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # installed with scikit-learn ([train] extra)

    return threadpool_limits(limits=n)


def gpu_names() -> list[str]:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


_LIBS = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "faiss-cpu",
    "faiss-gpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "fastapi",
    "uvicorn",
    "httpx",
)


def library_versions(names: Sequence[str] = _LIBS) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib() or 0.0, 1),
        "gpus": gpu_names(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "libraries": library_versions(),
    }


# --- ONNX Runtime ------------------------------------------------------------------------------------------------


def default_providers() -> str:
    """`--providers`' default: BRUSHPRINT_PROVIDERS as the service reads it (cpu, cuda; auto: cuda when this
    onnxruntime offers it), else cpu — so `BRUSHPRINT_PROVIDERS=cuda python -m bench.X` measures CUDA too."""
    wanted = os.environ.get("BRUSHPRINT_PROVIDERS", "cpu").strip().lower()
    if wanted == "auto":
        import onnxruntime as ort

        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    return wanted if wanted in PROVIDERS else "cpu"


def ort_providers(name: str) -> list[str]:
    """`--providers cpu|cuda` → the provider list; CUDA asked for but absent is an error, not a silent CPU run."""
    import onnxruntime as ort

    wanted = PROVIDERS[name]
    available = ort.get_available_providers()
    if name == "cuda" and "CUDAExecutionProvider" not in available:
        raise SystemExit(
            f"--providers cuda: this onnxruntime ({ort.__version__}) offers only {available}; install onnxruntime-gpu "
            "on a machine with an NVIDIA GPU, or run with --providers cpu"
        )
    return wanted


def session_config(threads: int | None = None):
    """The onnxruntime session options the service would run with (its settings from the environment, as
    `python -m service` reads them; service/serving/model.py SessionConfig), `threads` overriding theirs."""
    from service.config import Settings
    from service.serving.model import SessionConfig

    config = SessionConfig.of(Settings())
    return dataclasses.replace(config, intra_op_threads=threads) if threads else config


def ort_session(path: Path | str, providers: Sequence[str], threads: int | None = None):
    """One ONNX file as a session made like the service's (`session_config`); with `--providers cuda` a session
    that did not get CUDA is an error, not a silent CPU measurement."""
    import onnxruntime as ort

    config = session_config(threads)
    sess = ort.InferenceSession(str(path), sess_options=config.options(), providers=config.providers(list(providers)))
    if providers[0] == "CUDAExecutionProvider" and sess.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit(
            f"--providers cuda: onnxruntime runs {Path(path).name} on {sess.get_providers()}: CUDA did not start"
        )
    return sess


def load_model(model_dir: Path | str, providers: str):
    """A serving model as the service loads it (`Model.load` with the settings' session options); a model that
    cannot run on the providers asked for (CUDA missing or not starting) stops the benchmark with the reason."""
    from service.serving.model import Model, ModelError

    try:
        return Model.load(model_dir, providers=providers, session=session_config())
    except ModelError as e:
        raise SystemExit(f"--providers {providers}: {e}") from None


# --- the model under test ----------------------------------------------------------------------------------------


STANDIN_DIR = ROOT / "cache" / "bench-standin"  # /cache/ is git-ignored


def resolve_model_dir(arg: str | None, workdir: Path | None = None, build: bool = True) -> tuple[Path, str]:
    """The model to measure, and a sentence saying which, for the report.

    1. `--model-dir`; 2. models/default when it has a card; 3. a stand-in of the shipped model's shape (Lite2
    backbone with ImageNet weights, untrained symmetric head at the default sizes: the same costs, meaningless
    scores) — cached in cache/bench-standin, built when `build` and TensorFlow is installed; 4. the tests' tiny
    dev model (bench/devmodel.py), whose costs say little about the real model.
    """
    shipped_note = "the shipped model models/default"
    standin_note = (
        "a stand-in of the shipped model's shape (EfficientNet-Lite2 ImageNet backbone at 224 + untrained "
        "symmetric head at the default sizes; models/default has no model.json yet): real costs, meaningless scores"
    )
    if arg:
        given = Path(arg).resolve()
        known = {DEFAULT_MODEL_DIR.resolve(): shipped_note, STANDIN_DIR.resolve(): standin_note}
        return Path(arg), known.get(given, f"model directory {arg} (from --model-dir)")
    if (DEFAULT_MODEL_DIR / "model.json").is_file():
        return DEFAULT_MODEL_DIR, shipped_note
    if (STANDIN_DIR / "model.json").is_file():
        return STANDIN_DIR, standin_note
    if build:
        try:
            import training.backbone.export  # noqa: F401  (TensorFlow present?)
        except ImportError:
            pass
        else:
            return build_standin(STANDIN_DIR), standin_note
    from bench.devmodel import build_dev_model

    out = Path(workdir or tempfile.mkdtemp(prefix="brushprint-bench-model-")) / "devmodel"
    return build_dev_model(out), (
        "the tests' tiny dev model (bench/devmodel.py; 32×32 input, D=38): "
        "models/default has no model.json yet and no stand-in was built — its costs say little about the real model"
    )


def _calibration_table(sharpness: float):
    from contract.card import CalibrationRow

    rows = []
    for i in range(101):
        t = i / 100
        fpr, fnr = (1 - t) ** sharpness, t**sharpness
        rows.append(
            CalibrationRow(
                threshold=round(t, 2), fpr=fpr, fnr=fnr, precision=(1 - fnr) / max(1e-9, 1 - fnr + fpr), recall=1 - fnr
            )
        )
    return rows


def build_standin(out: Path) -> Path:
    """Export a model directory with the shipped model's shape (see `resolve_model_dir`), via
    training.backbone.export."""
    import shutil

    from contract.card import Calibration, PortfolioCalibration
    from training.backbone.backbones import build_embedder
    from training.backbone.export import export_model
    from training.heads.trained import build_head

    print(f"building the benchmark stand-in model in {out} (once; about a minute)", file=sys.stderr, flush=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    embedder, spec = build_embedder("efficientnet_lite2", weights="auto", image_size=224)
    head = build_head("symmetric", spec.embedding_dim)
    images = []
    for i, data in enumerate(make_images(2, size=256, seed=5, fmt="PNG")):
        images.append(tmp / f"parity{i}.png")
        images[-1].write_bytes(data)
    rng = np.random.default_rng(0)
    calibration = Calibration(
        pair=_calibration_table(2.0),
        portfolio=[PortfolioCalibration(k=k, table=_calibration_table(2.0 + k / 5)) for k in (1, 3, 5, 10, 20)],
        recommended_threshold=0.5,
        recommended_rule="placeholder (benchmark stand-in, untrained head)",
    )
    export_model(
        tmp,
        embedder,
        spec,
        head,
        calibration,
        metrics={"note": "benchmark stand-in: untrained head, scores are meaningless"},
        training_data={"corpus": "none"},
        parity_images=images,
        parity_embeddings=np.abs(rng.normal(0, 1, (32, spec.embedding_dim))).astype(np.float32),
        name="bench-standin",
        version="0",
    )
    for p in images:
        p.unlink()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # only a complete directory is ever found at `out`
    return out


# --- the report --------------------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


@dataclass
class Report:
    """One benchmark's result: tables (markdown), notes, raw numbers, and the one-line headline."""

    name: str
    title: str
    command: str = ""
    quick: bool = False
    tables: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    headline: str = ""
    machine: dict = field(default_factory=machine_info)
    load_start: float | None = field(default_factory=lambda: load_average())
    targets: list[dict] = field(default_factory=list)

    def table(self, caption: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.tables.append((caption, markdown_table(headers, rows)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def target(self, aim: str, measured: str, met: bool) -> None:
        """A target from the issue, what was measured, and whether this run met it (never asserted)."""
        self.targets.append({"aim": aim, "measured": measured, "met": bool(met)})

    def markdown(self, level: int = 2) -> str:
        h = "#" * level
        parts = [f"{h} {self.title}", ""]
        if self.command:
            parts += [f"`{self.command}`" + (" (quick mode)" if self.quick else ""), ""]
        for caption, table in self.tables:
            parts += [f"**{caption}**", "", table, ""]
        if self.targets:
            rows = [[t["aim"], t["measured"], "met" if t["met"] else "**missed**"] for t in self.targets]
            parts += ["**Targets**", "", markdown_table(["target", "measured", "this run"], rows), ""]
        notes = list(self.notes)
        if self.load_start is not None:
            end = self.data.get("load_end")
            notes.append(
                f"Machine load average (1 min) at start {self.load_start:.2f}"
                + (f", at end {end:.2f}" if end is not None else "")
                + f" on {self.machine.get('cores')} cores: above ~0.5 other processes shared the CPU during the run."
            )
        parts += [f"- {n}" for n in notes]
        if notes:
            parts.append("")
        parts += [f"**Headline:** {self.headline}", ""]
        return "\n".join(parts)

    def emit(self, json_path: str | None) -> None:
        """Print the report with the headline as the very last line; write the json if asked."""
        self.data.setdefault("load_end", load_average())
        print(self.markdown(), flush=True)
        if json_path:
            Path(json_path).write_text(json.dumps(asdict(self), indent=2, default=_jsonable) + "\n")
        print(f"HEADLINE {self.name}: {self.headline}", flush=True)


def _jsonable(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a reduced run that finishes within 60 s on 2 cores")
    p.add_argument("--json", metavar="PATH", help="also write the report as json (bench/run_all.py reads it)")
    p.add_argument(
        "--providers",
        choices=sorted(PROVIDERS),
        default=default_providers(),
        help="ONNX Runtime execution provider (cuda falls back to CPU per node only where CUDA lacks a kernel; "
        "default: BRUSHPRINT_PROVIDERS, else cpu)",
    )
    return p


def command_line() -> str:
    """How this benchmark was run, as a user types it: `python -m bench.<name> ARGS`."""
    return " ".join(["python", "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]])


# --- a real server process ---------------------------------------------------------------------------------------


ADMIN_KEY = "bench-admin-key-0123456789abcdef"


class Server(ServiceProcess):
    """bench/server.py's `python -m service` on loopback, set up for a benchmark: started on entry, stopped
    (SIGTERM, then SIGKILL) on exit, with the benchmark's admin key.

    `env` adds BRUSHPRINT_* settings (BRUSHPRINT_PROVIDERS picks cpu/cuda); the provider the service really
    uses is read back from /readyz as `provider`. The per-key rate limit is off: the benchmark is the only
    client, and measuring the limiter's 429s is the load test's business, not this one's.
    """

    def __init__(self, model_dir: Path, data_dir: Path, env: dict[str, str] | None = None, start_timeout: float = 180):
        quiet = {"BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0", "BRUSHPRINT_LOG_LEVEL": "WARNING"}
        log_path = Path(data_dir) / "server.log"
        super().__init__(model_dir, data_dir, ADMIN_KEY, env={**quiet, **(env or {})}, log_path=log_path)
        self.start_timeout = start_timeout
        self.ready: dict = {}

    @property
    def url(self) -> str:
        return self.base_url

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    @property
    def provider(self) -> str:
        providers = self.ready.get("providers") or ["unknown"]
        return str(providers[0])

    def require_provider(self, name: str) -> None:
        """`--providers cuda` must really run on CUDA: the service falls back to CPU silently otherwise."""
        if name == "cuda" and self.provider != "CUDAExecutionProvider":
            raise SystemExit(f"--providers cuda, but the service runs on {self.provider}")

    def __enter__(self) -> Server:
        import httpx

        self.start(self.start_timeout)
        try:
            self.ready = httpx.get(f"{self.url}/readyz", timeout=5).json().get("checks", {})
        except BaseException:
            self.stop()
            raise
        return self


def make_images(n: int, size: int = 256, seed: int = 0, fmt: str = "JPEG") -> list[bytes]:
    """n distinct small paintings-ish images (smooth colour fields plus grain) as encoded bytes."""
    import io

    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        grain = rng.integers(-20, 21, (size, size, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.int16) + grain, 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.SMOOTH)
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=85)
        out.append(buf.getvalue())
    return out
