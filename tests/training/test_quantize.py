"""training/backbone/quantize.py and `make_real(int8=True)`: a backbone statically quantised to int8 is smaller,
carries QuantizeLinear/DequantizeLinear nodes, is served by service.serving.model.Model, is judged against fp32 on
crops of paintings the calibration never saw, and is refused when it strays; the int8 model's card and REPORT carry
its own measured figures beside the fp32 model's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from bench.devmodel import CHANNELS, CROP, EMBEDDING_DIM, _mean_std, build_dev_model
from contract.card import load_card, seal_card
from contract.decode import decode_file
from service.serving.model import Model
from training.backbone import quantize
from training.backbone.onnxgraph import init, save, value
from training.data import synthetic
from training.data.datasets import read_folders
from training.realmodel import BACKBONE_FILE, crop_vectors, make_real, real_backbone_spec

GRID, RESIZE, DIM = 2, 48, 8
WIDTH = 64


def _deep_backbone(path: Path, rng: np.random.Generator) -> None:
    """The dev model's backbone contract (image [N, 32, 32, 3] → embedding [N, 38], pooled features first) with
    enough convolution weights (~300 kB fp32) that int8 weights show in the file size."""

    def conv(name: str, cin: int, cout: int, k: int) -> onnx.TensorProto:
        return init(name, rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)))

    nodes = [helper.make_node("Transpose", ["image"], ["x"], perm=[0, 3, 1, 2])]
    inits = [init("eps", np.array(1e-6))]
    src, cin = "x", 3
    for i, (cout, k) in enumerate(((WIDTH, 3), (WIDTH, 3), (WIDTH, 3), (CHANNELS, 1))):
        inits += [conv(f"w{i}", cin, cout, k), init(f"b{i}", rng.normal(0, 0.05, cout))]
        pads = [k // 2] * 4
        nodes += [
            helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k, k], pads=pads),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        src, cin = f"r{i}", cout
    nodes += [
        *_mean_std(src, "feat_mean", "feat_std", "f"),
        *_mean_std("x", "rgb_mean", "rgb_std", "c"),
        helper.make_node("Concat", ["feat_mean", "feat_std", "rgb_mean", "rgb_std"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "deep", [value("image", "N", CROP, CROP, 3)], [value("embedding", "N", EMBEDDING_DIM)], inits
    )
    save(graph, path, producer="test")


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A dev model directory with the deeper backbone, a small corpus, and disjoint calibration/held-out crops."""
    root = tmp_path_factory.mktemp("quantize")
    model = build_dev_model(root / "model")
    _deep_backbone(model / BACKBONE_FILE, np.random.default_rng(1))
    card = seal_card(load_card(model, verify_files=False), model)
    synthetic.generate(root / "corpus", 6, 3, seed=0, size=64)
    paths = read_folders(root / "corpus").paths()
    spec = real_backbone_spec(card.backbone, GRID, RESIZE)
    sample = quantize.sample_crops(paths, spec, paintings=8, held_out_paintings=6, per_painting=3, seed=0)
    return {"root": root, "model": model, "card": card, "spec": spec, "sample": sample, "paths": paths}


@pytest.fixture(scope="module")
def quantised(deep):
    dst = deep["root"] / "int8.onnx"
    s = deep["sample"]
    figures = quantize.quantize_backbone(
        deep["model"] / BACKBONE_FILE, dst, s.calibration, held_out=s.held_out, recipe=deep["spec"].embedding,
        float_convs=0, timing=False,
    )  # fmt: skip
    return dst, figures


def test_the_sample_takes_calibration_and_held_out_crops_from_different_paintings(deep):
    s = deep["sample"]
    assert (s.calibration_paintings, s.held_out_paintings) == (8, 6)
    assert s.calibration.shape == (8 * 3, CROP, CROP, 3) and s.held_out.shape == (6 * 3, CROP, CROP, 3)
    cal = {c.tobytes() for c in s.calibration}
    assert not any(h.tobytes() in cal for h in s.held_out)
    again = quantize.sample_crops(deep["paths"], deep["spec"], paintings=8, held_out_paintings=6, per_painting=3)
    np.testing.assert_array_equal(again.calibration, s.calibration)  # seeded: the same crops again
    other = quantize.sample_crops(deep["paths"], deep["spec"], paintings=8, held_out_paintings=6, per_painting=3,
                                  seed=1)  # fmt: skip
    assert other.calibration.tobytes() != s.calibration.tobytes()


def test_an_int8_backbone_is_smaller_and_holds_quantize_dequantize_nodes(deep, quantised):
    dst, figures = quantised
    src = deep["model"] / BACKBONE_FILE
    assert figures["fp32_bytes"] == src.stat().st_size and figures["int8_bytes"] == dst.stat().st_size
    assert dst.stat().st_size < 0.4 * src.stat().st_size
    ops = quantize.op_counts(dst)
    assert ops["QuantizeLinear"] == figures["quantize_linear"] > 0
    assert ops["DequantizeLinear"] == figures["dequantize_linear"] > 0
    # every convolution's weights are stored as int8, one scale per output channel
    model = onnx.load(str(dst))
    weights = {t.name: t for t in model.graph.initializer}
    int8_weights = [t for t in weights.values() if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 4 and not any(t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4
                                              for t in weights.values())  # fmt: skip
    deq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights]
    assert {tuple(onnx.numpy_helper.to_array(weights[n.input[1]]).shape) for n in deq if
            len(weights[n.input[0]].dims) == 4} == {(WIDTH,), (CHANNELS,)}  # fmt: skip
    assert figures["calibration_crops"] == len(deep["sample"].calibration) and figures["fp32_nodes"] == []


def test_the_service_loads_and_runs_the_int8_backbone(deep, quantised, tmp_path):
    dst, _ = quantised
    model_dir = tmp_path / "int8"
    shutil.copytree(deep["model"], model_dir)
    shutil.copyfile(dst, model_dir / BACKBONE_FILE)
    seal_card(load_card(model_dir, verify_files=False), model_dir)
    fp32, int8 = Model.load(deep["model"], providers="cpu"), Model.load(model_dir, providers="cpu")
    assert int8.model_id != fp32.model_id
    inputs = [int8.model_inputs(decode_file(p).image) for p in deep["paths"][:6]]
    a, b = fp32.embed_pictures(inputs), int8.embed_pictures(inputs)
    assert a.shape == b.shape == (6, EMBEDDING_DIM) and np.isfinite(b).all()
    pooled = slice(0, CHANNELS)
    cos = (
        np.sum(a[:, pooled] * b[:, pooled], 1)
        / np.linalg.norm(a[:, pooled], axis=1)
        / np.linalg.norm(b[:, pooled], axis=1)
    )
    assert cos.min() > 0.95
    assert np.abs(a - b).max() > 1e-4  # it is another computation, not the fp32 file again


def test_parity_is_measured_on_the_held_out_crops(deep, quantised):
    dst, figures = quantised
    s, recipe = deep["sample"], deep["spec"].embedding
    src = deep["model"] / BACKBONE_FILE
    held = figures["held_out"]
    assert held == quantize.parity(src, dst, s.held_out, recipe)
    assert held["crops"] == len(s.held_out)
    assert held != quantize.parity(src, dst, s.calibration, recipe)
    assert 0.9 <= held["cosine_min"] <= held["cosine_p05"] <= held["cosine_mean"] < 1.0
    assert figures["thresholds"] == {"cosine_mean": quantize.MIN_MEAN_COSINE, "cosine_min": quantize.MIN_WORST_COSINE}


def test_an_int8_backbone_that_strays_is_refused_and_the_file_kept(deep, tmp_path):
    s = deep["sample"]
    bb = tmp_path / BACKBONE_FILE
    shutil.copyfile(deep["model"] / BACKBONE_FILE, bb)
    before = bb.read_bytes()
    for bounds in ({"min_mean": 1.0001}, {"min_worst": 1.0001}):
        with pytest.raises(quantize.QuantisationError, match="stray from fp32"):
            quantize.quantize_backbone(bb, bb, s.calibration, held_out=s.held_out, recipe=deep["spec"].embedding,
                                       float_convs=0, timing=False, **bounds)  # fmt: skip
        assert bb.read_bytes() == before


def test_the_first_convolutions_stay_fp32(deep, tmp_path):
    s = deep["sample"]
    figures = quantize.quantize_backbone(
        deep["model"] / BACKBONE_FILE, tmp_path / "b.onnx", s.calibration, held_out=s.held_out,
        recipe=deep["spec"].embedding, float_convs=2, timing=False,
    )  # fmt: skip
    model = onnx.load(str(tmp_path / "b.onnx"))
    weights = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert [n.name for n in convs[:2]] == figures["fp32_nodes"]
    assert [n.input[1] in weights and weights[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in convs] == [
        True, True, False, False,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def int8_built(tmp_path_factory, monkeypatch_module):
    """A tiny fp32 real model (2 acquisition conditions) and the int8 model built from its backbone."""
    root = tmp_path_factory.mktemp("int8real")
    synthetic.generate(root / "corpus", 8, 3, seed=0, size=64)
    dev = build_dev_model(root / "dev")
    kw = dict(grid=GRID, resize_shorter=RESIZE, dim=DIM, repeats=2, nested_repeats=1, n_boot=50, judge_boot=50,
              synthetic=(0, 0), conditions=["jpeg_q70", "blur_0.8"])  # fmt: skip
    fp32 = make_real(root / "fp32", root / "corpus", root / "work", backbone_from=dev, **kw)
    # the dev backbone has one convolution: quantise it too (the default keeps the first three in fp32)
    monkeypatch_module.setattr(quantize, "FLOAT_CONVS", 0)
    int8 = make_real(root / "int8", root / "corpus", root / "work", backbone_from=root / "fp32", int8=True,
                     name="devmodel-int8", **kw)  # fmt: skip
    return {"root": root, "fp32": fp32, "int8": int8}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_make_real_int8_writes_an_int8_card_with_its_own_figures(int8_built):
    root, fp32, card = int8_built["root"], int8_built["fp32"], int8_built["int8"]
    out = root / "int8"
    assert load_card(out).model_dump(mode="json") == card.model_dump(mode="json")
    assert card.name == "devmodel-int8" and card.model_id != fp32.model_id
    ops = quantize.op_counts(out / BACKBONE_FILE)
    assert (
        ops.get("QuantizeLinear", 0) > 0
        and quantize.op_counts(root / "fp32" / BACKBONE_FILE).get("QuantizeLinear", 0) == 0
    )
    assert (root / "work" / "backbone-fp32.onnx").read_bytes() == (root / "fp32" / BACKBONE_FILE).read_bytes()
    assert "int8: statically quantised" in card.backbone.weights and "int8" in card.backbone.embedding.description
    q = card.metrics["quantisation"]
    assert q["calibration_crops"] == q["calibration_paintings"] * GRID * GRID
    assert q["calibration_paintings"] + q["held_out"]["paintings"] <= 24
    assert q["held_out"]["crops"] == q["held_out"]["paintings"] * GRID * GRID
    assert q["int8_bytes"] == (out / BACKBONE_FILE).stat().st_size and q["timing"]["ratio"] > 0
    ref = q["fp32"]
    assert ref["model_id"] == fp32.model_id
    assert ref["pair"]["auc"] == fp32.metrics["real"]["pair"]["auc"]
    assert set(ref["robustness"]) == set(fp32.metrics["robustness"]["judged"]) - {"error_versus_discard"}
    report = (out / "REPORT.md").read_text()
    assert "## The int8 backbone against fp32" in report and fp32.model_id in report
    assert f"| pair ROC AUC | {card.metrics['real']['pair']['auc']:.3f}" in report
    assert f"{fp32.metrics['real']['pair']['auc']:.3f}" in report


def test_the_int8_card_is_measured_with_the_int8_backbone(int8_built):
    root, card = int8_built["root"], int8_built["int8"]
    out = root / "int8"
    paths = read_folders(root / "corpus").paths()[:6]
    model = Model.load(out, providers="cpu")
    served = model.embed_pictures([model.model_inputs(decode_file(p).image) for p in paths])
    trained = np.stack([c.mean(axis=0) for c in crop_vectors(paths, card.backbone, out / BACKBONE_FILE)])
    np.testing.assert_allclose(served, trained, atol=1e-5)
    fp32 = np.stack([c.mean(axis=0) for c in crop_vectors(paths, card.backbone, root / "fp32" / BACKBONE_FILE)])
    assert np.abs(fp32 - trained).max() > 1e-4
    # the shipped whitening was fitted on the int8 crops: a card built on fp32 crops has another projection
    assert card.head.cosine is not None and int8_built["fp32"].head.cosine is not None
    assert card.head.cosine.slope != int8_built["fp32"].head.cosine.slope


def test_the_int8_benchmark_compares_the_two_model_directories(int8_built, tmp_path):
    root = int8_built["root"]
    out = tmp_path / "int8.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.int8", "--quick", "--fp32", str(root / "fp32"), "--int8", str(root / "int8"),
         "--pictures", str(root / "corpus"), "--json", str(out)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(f"HEADLINE int8: {root / 'int8'} ")
    data = json.loads(out.read_text())["data"]
    assert len(data["pictures"]) == 3 and data["crops"] == {"fp32": GRID * GRID, "int8": GRID * GRID}
    assert data["threads"] == 2
    assert data["ratio"] == pytest.approx(data["ms_per_picture"]["int8"] / data["ms_per_picture"]["fp32"])
    assert 0.9 < data["embedding_cosine"]["min"] <= data["embedding_cosine"]["mean"] < 1.0
    assert int8_built["int8"].model_id in proc.stdout and int8_built["fp32"].model_id in proc.stdout
