"""End to end on a tiny synthetic corpus: synth → embed → train both heads → evaluate → export → parity → card.

`build_tiny_model(tmp_dir)` is also meant for service tests that need a real model directory
(about a minute on 2 cores; the result is reused if already built in `tmp_dir`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from contract.calibration import GRID
from contract.card import load_card
from contract.recipe import preprocess
from training.cli import main

TINY_ARGS = [
    "--image-size", "96",
    "--val", "0.25",
    "--test", "0.25",
    "--seen-test-fraction", "0.25",
    "--epochs", "10",
    "--pairs-per-epoch", "2048",
    "--seed-head-epochs", "2",
    "--patience", "3",
    "--val-pairs", "1000",
    "--eval-pairs", "1000",
    "--portfolio-trials", "200",
]  # fmt: skip


def build_tiny_model(tmp_dir: Path) -> Path:
    """A complete model directory (Lite2 at 96 px, 24 synthetic artists × 8 paintings); returns its path."""
    tmp_dir = Path(tmp_dir)
    out = tmp_dir / "model"
    if (out / "model.json").is_file():
        return out
    corpus = tmp_dir / "corpus"
    main(["synth", "--out", str(corpus), "--artists", "24", "--per-artist", "8", "--size", "96", "--workers", "1"])
    main(["run", "--corpus", f"synthetic:{corpus}", "--work", str(tmp_dir / "work"), "--out", str(out), *TINY_ARGS])
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    return root, build_tiny_model(root)


def test_model_dir_holds_only_what_the_service_needs(built):
    _, out = built
    card = load_card(out)  # also verifies every ONNX file's sha256
    names = {p.name for p in out.iterdir()}
    assert set(card.onnx_files()) <= names
    extra = names - set(card.onnx_files()) - {"model.json", "REPORT.md"}
    assert extra and all(n.endswith(".png") for n in extra)
    assert card.backbone.arch == "efficientnet_lite2" and card.backbone.preprocessing.crop == (96, 96)
    assert all(d < 1e-4 for d in card.metrics["parity_max_abs_diff"].values())


def test_head_beats_chance_on_unseen_artists(built):
    card = load_card(built[1])
    unseen = card.metrics["unseen"]["pair"]
    assert unseen["auc"] > 0.6, unseen
    assert card.metrics["unseen"]["artists"] == 6
    assert "seen" in card.metrics  # the leaky protocol, reported apart
    assert card.metrics["heads"].keys() == {"seed", "symmetric"}
    chosen = max(card.metrics["heads"], key=lambda k: card.metrics["heads"][k]["val_auc"])
    assert card.head.kind == chosen


def test_calibration_tables(built):
    cal = load_card(built[1]).calibration
    assert cal.split == "val" and [r.threshold for r in cal.pair] == list(GRID)
    assert [p.k for p in cal.portfolio] == [1, 3, 5]  # val artists have 8 images: k=10, 20 impossible
    assert 0.0 <= cal.recommended_threshold <= 1.0


def test_onnx_backbone_matches_the_training_embeddings(built):
    root, out = built
    card = load_card(out)
    manifest = (root / "work" / "manifest.csv").read_text().splitlines()[1:4]
    emb = np.load(root / "work" / "embeddings.npy")[:3]
    paths = [line.split(",")[1] for line in manifest]
    x = np.stack([preprocess(Image.open(p), card.backbone.preprocessing) for p in paths])
    backbone = ort.InferenceSession(str(out / card.backbone.file), providers=["CPUExecutionProvider"])
    got = backbone.run(None, {card.backbone.input_name: x})[0]
    assert got.shape == (3, card.backbone.embedding_dim)
    np.testing.assert_allclose(got, emb, atol=1e-4)
    head = ort.InferenceSession(str(out / card.head.file), providers=["CPUExecutionProvider"])
    a, b = card.head.input_names
    p_ab = head.run(None, {a: got[:2], b: got[1:]})[0]
    p_ba = head.run(None, {a: got[1:], b: got[:2]})[0]
    assert p_ab.shape == (2,)
    np.testing.assert_allclose(p_ab, p_ba, atol=1e-6)


def test_report_and_run_state(built):
    root, out = built
    report = (out / "REPORT.md").read_text()
    assert "python -m training run --corpus synthetic:" in report
    assert "Shipped head" in report and "seen artists" in report
    for png in (p for p in out.iterdir() if p.suffix == ".png"):
        assert f"({png.name})" in report
    state = json.loads((root / "work" / "run.json").read_text())
    assert {"split", "embed", "train seed", "train symmetric", "export"} <= set(state["timings"])


def test_stage_commands_rerun_from_the_work_dir(built, tmp_path):
    root, _ = built
    # evaluate + export again from the cached work dir only; a different output dir
    main(
        [
            "evaluate",
            "--work",
            str(root / "work"),
            "--heads",
            "symmetric",
            "--eval-pairs",
            "200",
            "--portfolio-trials",
            "50",
        ]
    )
    out = tmp_path / "again"
    main(["export", "--work", str(root / "work"), "--out", str(out), "--heads", "symmetric"])
    assert load_card(out).head.kind == "symmetric"


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("synth", "embed", "train", "evaluate", "export", "run", "make-default"):
        assert cmd in res.stdout
