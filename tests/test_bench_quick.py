"""The benchmarks stay runnable: one cheap script, run as a user runs it, ends with its headline.

No timing is asserted (figures depend on the machine); what is checked is that the script runs against a real
model directory, measures every size asked for, and reports the figures it claims in its last line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.devmodel import build_dev_model

ROOT = Path(__file__).resolve().parents[1]


def test_verify_scaling_quick_runs_and_prints_its_headline(tmp_path: Path) -> None:
    model_dir = build_dev_model(tmp_path / "model")
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.verify_scaling",
            "--quick",
            "--sizes",
            "10,100",
            "--model-dir",
            str(model_dir),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("HEADLINE verify_scaling: 100 references: brushprint p50 "), last
    assert "faster than the naive pair head" in last and "CPUExecutionProvider" in last

    report = json.loads(out.read_text())
    assert report["headline"] in last
    assert sorted(report["data"]["sizes"]) == ["10", "100"]
    for entry in report["data"]["sizes"].values():
        for path in ("brushprint", "naive"):
            assert entry[path]["n"] >= 3
            assert 0 < entry[path]["p50_ms"] <= entry[path]["p99_ms"]
    assert report["data"]["head"] == "symmetric"
    # the table printed above the headline carries both sizes
    assert "| 10 |" in proc.stdout and "| 100 |" in proc.stdout
