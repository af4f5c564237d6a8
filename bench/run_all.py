"""Run every benchmark (full versions by default) and rewrite BENCHMARKS.md from their results.

Each script runs in its own process (so one's threads, sessions and TensorFlow do not disturb the next) with
`--json`; this script collects the reports and writes the machine, the date, library versions, the exact
commands and every table. A script that fails is recorded as failed with the end of its output, the others
still run, and the exit status is non-zero.

    python -m bench.run_all                      # what `make bench` runs
    python -m bench.run_all --quick --out /tmp/B.md
    python -m bench.run_all --only verify_scaling,identify_scaling --providers cuda
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common as C

SCRIPTS = (
    "backbone",
    "verify_scaling",
    "identify_scaling",
    "http_e2e",
    "memory",
    "recipe_cost",
    "evidence_cost",
    "cache_cost",
)
TAKES_MODEL_DIR = ("verify_scaling", "http_e2e", "memory", "recipe_cost", "evidence_cost", "cache_cost")
REPORT_FIELDS = ("name", "title", "quick", "notes", "data", "headline", "machine", "load_start", "targets")
TIMEOUT_S = 45 * 60


def run_one(name: str, extra: list[str], workdir: Path) -> tuple[dict | None, str, float, str]:
    out = workdir / f"{name}.json"
    cmd = [sys.executable, "-m", f"bench.{name}", *extra, "--json", str(out)]
    shown = " ".join(["python", "-m", f"bench.{name}", *extra])
    print(f"$ {shown}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=C.ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        stdout, output, rc = proc.stdout, proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, output, rc = "", f"{e.stdout or ''}{e.stderr or ''}\ntimed out after {TIMEOUT_S} s", -1
    took = time.perf_counter() - t0
    last = (stdout.strip().splitlines() or [""])[-1] if rc == 0 else f"FAILED (exit {rc})"
    print(f"  {last}  [{took:.0f} s]", flush=True)
    if rc != 0 or not out.is_file():
        return None, output, took, shown
    return json.loads(out.read_text()), output, took, shown


def render(results: list[tuple[str, dict | None, str, float, str]], quick: bool, model: str) -> str:
    m = C.machine_info()
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    lines = [
        "# brushprint benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run_all`); do not edit by hand. Every figure compares brushprint "
        "with the way a user would otherwise do the same thing, measured in the same run on the same machine. "
        "Targets are aims, not guarantees; a missed target is reported as measured.",
        "",
        "## Machine",
        "",
        C.markdown_table(
            ["", ""],
            [
                ["CPU", f"{m['cpu']} ({m['cores']} cores visible)"],
                ["RAM", f"{m['ram_gib']} GiB"],
                ["GPU", ", ".join(m["gpus"]) or "none"],
                ["OS", m["os"]],
                ["Python", m["python"]],
                ["Libraries", libs],
                ["Date", m["date"]],
                ["Model", model],
                ["Mode", "quick (`--quick`: reduced sizes and durations)" if quick else "full"],
            ],
        ),
        "",
        "## Headlines",
        "",
    ]
    for name, rep, _, _took, shown in results:
        lines.append(f"- **{name}**: " + (rep["headline"] if rep else f"failed — see below (`{shown}`)"))
    lines.append("")
    targets = [
        [name, t["aim"], t["measured"], "met" if t["met"] else "**missed**"]
        for name, rep, *_ in results
        if rep
        for t in rep.get("targets", [])
    ]
    if targets:
        lines += ["## Targets", "", C.markdown_table(["benchmark", "target", "measured", "this run"], targets), ""]
    for name, rep, output, took, shown in results:
        if rep is None:
            tail = "\n".join(output.strip().splitlines()[-25:])
            lines += [f"## {name}: FAILED", "", f"`{shown}` ({took:.0f} s)", "", "```", tail, "```", ""]
            continue
        report = C.Report(**{k: rep[k] for k in REPORT_FIELDS})
        report.command = shown
        report.tables = [tuple(t) for t in rep["tables"]]
        report.notes = [*report.notes, f"Ran in {took:.0f} s."]
        lines.append(report.markdown(level=2))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="run every script with --quick")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SCRIPTS)}")
    p.add_argument("--providers", choices=sorted(C.PROVIDERS), default="cpu")
    p.add_argument("--out", default=str(C.ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = set(names) - set(SCRIPTS)
    if unknown:
        p.error(f"unknown benchmarks {sorted(unknown)}")
    extra = (["--quick"] if args.quick else []) + (["--providers", args.providers] if args.providers != "cpu" else [])

    results = []
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-all-") as tmp:
        model_args: list[str] = []
        which = "– (no benchmark here loads a model)"
        if set(names) & set(TAKES_MODEL_DIR):
            # resolved once, so the dev model (when there is no shipped one) is built once, not per script
            model_dir, which = C.resolve_model_dir(None, Path(tmp))
            print(f"model: {which}", flush=True)
            if model_dir != C.DEFAULT_MODEL_DIR:
                model_args = ["--model-dir", os.path.relpath(model_dir, C.ROOT)]
        for name in names:
            rep, output, took, shown = run_one(name, extra + (model_args if name in TAKES_MODEL_DIR else []), Path(tmp))
            results.append((name, rep, output, took, shown))
    Path(args.out).write_text(render(results, args.quick, which))
    failed = [n for n, rep, *_ in results if rep is None]
    print(f"wrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
