"""The benchmarks stay runnable: one cheap script, run as a user runs it, ends with its headline.

No timing is asserted (figures depend on the machine); what is checked is that the script runs against a real
model directory, measures every size asked for, and reports the figures it claims in its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.devmodel import build_dev_model

ROOT = Path(__file__).resolve().parents[1]


def _run_bench(*args: str, timeout: int) -> str:
    """`python -m <args>` from the repository root, as a user runs it; what it printed."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_verify_scaling_quick_runs_and_prints_its_headline(tmp_path: Path) -> None:
    model_dir = build_dev_model(tmp_path / "model")
    out = tmp_path / "report.json"
    stdout = _run_bench(
        "bench.verify_scaling",
        "--quick",
        "--sizes",
        "10,100",
        "--model-dir",
        str(model_dir),
        "--json",
        str(out),
        timeout=120,
    )
    last = stdout.strip().splitlines()[-1]
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
    assert "| 10 |" in stdout and "| 100 |" in stdout


def _multi_crop_dev_model(out: Path) -> Path:
    """The dev model with a 2×2 grid over a 64-px shorter side: the multi-crop recipe, the same ONNX files."""
    from contract.card import load_card, write_card

    model_dir = build_dev_model(out)
    card = load_card(model_dir)
    pre = card.backbone.preprocessing.model_copy(update={"grid": (2, 2), "resize_shorter": 64})
    write_card(card.model_copy(update={"backbone": card.backbone.model_copy(update={"preprocessing": pre})}), model_dir)
    return model_dir


def test_recipe_cost_old_recipe_is_the_same_model_with_one_centre_crop(tmp_path: Path) -> None:
    from bench.modelcopy import single_crop_copy
    from contract.card import load_card

    new_dir = _multi_crop_dev_model(tmp_path / "model")
    old_dir = single_crop_copy(new_dir, tmp_path / "old")
    new, old = load_card(new_dir), load_card(old_dir)  # verifies the copied files against the card's hashes
    assert old.backbone.preprocessing.grid == (1, 1) and old.backbone.preprocessing.n_crops == 1
    assert old.backbone.preprocessing.resize_shorter == max(new.backbone.preprocessing.crop)
    assert old.files == new.files and old.head == new.head
    assert old.backbone.preprocessing.model_copy(update={"grid": (2, 2), "resize_shorter": 64}) == (
        new.backbone.preprocessing
    )
    assert (old_dir / old.backbone.file).read_bytes() == (new_dir / new.backbone.file).read_bytes()


def test_recipe_cost_quick_runs_and_prints_its_headline(tmp_path: Path) -> None:
    model_dir = _multi_crop_dev_model(tmp_path / "model")
    out = tmp_path / "report.json"
    stdout = _run_bench(
        "bench.recipe_cost",
        "--quick",
        "--repeat",
        "4",
        "--duration",
        "1",
        "--http-duration",
        "2",
        "--model-dir",
        str(model_dir),
        "--json",
        str(out),
        timeout=180,
    )
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("HEADLINE recipe_cost: /v1/compare p50 at 1 client over HTTP: 4-crop recipe "), last
    assert "crop micro-batching" in last and "CPUExecutionProvider" in last

    report = json.loads(out.read_text())
    data = report["data"]
    assert report["headline"] in last
    assert data["crops"] == {"old": 1, "new": 4}
    for recipe in ("old", "new"):
        for stage in ("decode", "model_inputs", "backbone_combine", "total"):
            st = data["per_picture"][recipe][stage]
            assert st["n"] >= 3 and 0 < st["p50_ms"] <= st["p99_ms"]
        assert data["http"][recipe]["ok"] > 0 and set(data["http"][recipe]["codes"]) == {"200"}
    cells = data["throughput"]["cells"]
    assert sorted(cells) == ["new, batch 16", "new, batch 64", "old, batch 64"]
    assert data["default_batch_max_size"] == 16  # unset on CPU: one 16-crop picture per run
    for label, cell in cells.items():
        assert cell["crops"] > 0 and cell["pictures_per_s"] > 0
        assert 1 <= cell["mean_crops_per_run"] <= int(label.rsplit(" ", 1)[1])
    assert data["batching_gain"] > 0 and data["http_p50_ratio"] > 0
    assert [t["aim"] for t in report["targets"]] == [
        "/v1/compare p50 at 1 client, new recipe ≤ 2× the single-crop one",
        "pictures/s at 16 clients, new recipe ≥ 1/3 of the single-crop one (both batch 64)",
    ]
    # the tables printed above the headline carry both recipes and all three measurements
    assert "| old (1 crop) |" in stdout and "| new (4 crops) |" in stdout
    assert "| **per picture** |" in stdout and "| new, batch 16 (the default) |" in stdout
    assert data["http"]["batch_max_size"] == 16 and sorted(data["http"]["clients"]) == ["1"]


@pytest.mark.parametrize(
    ("script", "how"),
    [
        ("bench.backbone", "flag"),
        ("bench.recipe_cost", "flag"),
        ("bench.http_e2e", "flag"),
        ("bench.memory", "flag"),
        ("bench.recipe_cost", "environment"),
    ],
)
def test_cuda_asked_for_without_it_stops_with_a_reason(script: str, how: str) -> None:
    # the GPU benchmarks are run by hand on a GPU box: on one without CUDA they must say so, not print a traceback
    # or measure the CPU under a CUDA heading
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRUSHPRINT_")}
    # the script runs in an onnxruntime that offers no CUDA, on any host (a GPU host's onnxruntime-gpu included)
    no_cuda = (
        "import onnxruntime, runpy, sys; onnxruntime.get_available_providers = lambda: ['CPUExecutionProvider']; "
        f"sys.argv = [{script!r}] + sys.argv[1:]; runpy.run_module({script!r}, run_name='__main__')"
    )
    args = [sys.executable, "-c", no_cuda, "--quick"]
    if how == "flag":
        args += ["--providers", "cuda"]
    else:
        env["BRUSHPRINT_PROVIDERS"] = "cuda"
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert "--providers cuda: this onnxruntime" in out and "onnxruntime-gpu" in out, out[-2000:]


def test_uint8_input_gives_the_same_outputs_and_prints_both_rates(tmp_path: Path) -> None:
    # the GPU lever measured on the H200: the card's normalisation moved into the graph changes no output
    model_dir = build_dev_model(tmp_path / "model")
    out = tmp_path / "report.json"
    args = ["--quick", "--model-dir", str(model_dir), "--batches", "4,8", "--json", str(out)]
    stdout = _run_bench("bench.uint8_input", *args, timeout=120)
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("HEADLINE uint8_input: uint8 ÷ float32 input: backbone alone at batch 8 "), last
    assert "per picture as served" in last
    report = json.loads(out.read_text())
    assert "max abs difference 0." in stdout and "| 4 |" in stdout and "| 8 |" in stdout
    assert report["headline"] in stdout
    served = report["data"]["served_ms"]  # both input types, as the service loads them, every round kept
    assert sorted(served) == ["float32", "uint8"] and all(len(v) == 2 and min(v) > 0 for v in served.values())


def test_cache_cost_quick_counts_the_backbone_for_every_mode(tmp_path: Path) -> None:
    model_dir = build_dev_model(tmp_path / "model")
    out = tmp_path / "report.json"
    stdout = _run_bench(
        "bench.cache_cost",
        "--quick",
        "--others",
        "4",
        "--sessions",
        "2",
        "--model-dir",
        str(model_dir),
        "--json",
        str(out),
        timeout=180,
    )
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("HEADLINE cache_cost: dealer's session, 1 candidate vs 4 others"), last
    assert "sent at once, the session" in last
    data = json.loads(out.read_text())["data"]
    # the backbone's work per session is what the cache (and its single flight) promise: 2N off, N + 1 on
    assert data["backbone_pictures_per_session"] == {
        "off": [8, 8],
        "on": [5, 5],
        "retry": [0, 0],
        "off, at once": [8, 8],
        "on, at once": [5, 5],
    }
    assert data["cache"]["shared"] == 2 * 3  # per session at once: the candidate's 3 other copies waited
    assert "| cache on, the 4 compares sent at once (single flight) |" in stdout
