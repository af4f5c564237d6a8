"""training/realmodel.py end to end without TensorFlow: the dev model's backbone as `backbone_from`, a small
folder-per-artist corpus, `make_real` → a model directory the service loads, whose multi-crop embedding and
reference vectors are exactly the ones training computed."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from bench.devmodel import CROP, build_dev_model
from contract.card import load_card
from contract.decode import decode_file
from service.serving.model import Model
from training.backbone.onnxgraph import free_spatial_dims
from training.data import conditions, synthetic
from training.evaluation import realeval, robustness
from training.heads.cosine import CosineHead
from training.realmodel import (
    BACKBONE_FILE,
    RealModelError,
    backbone_from_dir,
    crop_vectors,
    make_real,
    real_backbone_spec,
)

GRID = 2
RESIZE = 48  # ≥ the dev model's 32-px crop, so the 2x2 grid spreads over a larger picture
DIM = 8
ARTISTS, PER_ARTIST = 8, 3


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("realmodel")
    corpus = root / "corpus"
    manifest = synthetic.generate(corpus, ARTISTS, PER_ARTIST, seed=0, size=64)
    dev = build_dev_model(root / "dev")
    out = root / "out"
    out.mkdir()
    (out / "stale.onnx").write_bytes(b"a file of the model this one replaces")
    card = make_real(
        out,
        corpus,
        root / "work",
        backbone_from=dev,
        grid=GRID,
        resize_shorter=RESIZE,
        dim=DIM,
        repeats=2,
        nested_repeats=1,
        n_boot=50,
        synthetic=(0, 0),
    )
    return {"card": card, "out": out, "corpus": corpus, "dev": dev, "paths": manifest.paths(), "work": root / "work"}


def test_the_model_directory_holds_every_file(built):
    out = built["out"]
    for name in (
        "model.json",
        "head.onnx",
        "head_projection.onnx",
        "head_comparator.onnx",
        BACKBONE_FILE,
        "REPORT.md",
        "real_roc.png",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert not (out / "stale.onnx").exists()
    assert (out / BACKBONE_FILE).read_bytes() == (built["dev"] / "backbone.onnx").read_bytes()
    assert (out / "real_roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = load_card(out)  # the sha256 of every ONNX file matches
    assert card.model_dump(mode="json") == built["card"].model_dump(mode="json")
    assert card.model_id in (out / "REPORT.md").read_text()


def test_the_card_describes_a_multi_crop_cosine_model(built):
    card = built["card"]
    h, b = card.head, card.backbone
    assert h.kind == "cosine"
    assert h.file == "head.onnx" and h.input_names == ("embedding_a", "embedding_b")
    assert h.projection is not None and h.projection.file == "head_projection.onnx"
    assert h.projection.output_dim == DIM
    assert h.comparator is not None and h.comparator.file == "head_comparator.onnx"
    assert h.cosine is not None and h.cosine.dim == DIM and h.cosine.power == -0.5
    n = ARTISTS * PER_ARTIST
    assert h.cosine.fitted_on.startswith(f"{n * GRID * GRID} crops of {n} real paintings")
    assert "copies under 22 acquisition conditions" in h.cosine.fitted_on
    assert h.selected_on.startswith("rates that hold on photographs: worst observed FPR at max_fpr=0.05")
    assert "nuisance-aware whitening" in h.selected_on and "no whitening" in h.selected_on

    dev = load_card(built["dev"])
    assert b.preprocessing.grid == (GRID, GRID)
    assert b.preprocessing.resize_shorter == RESIZE
    assert b.preprocessing.crop == (CROP, CROP)
    pooled = dev.backbone.embedding.pooled_dim
    assert pooled > 0
    assert b.embedding.crop_features == (0, pooled)
    assert b.embedding.combine == "l2_mean"
    assert b.embedding_dim == pooled and b.crop_dim == dev.backbone.embedding_dim

    assert "out-of-fold" in card.calibration.split
    assert 0.0 <= card.calibration.recommended_threshold <= 1.0
    assert card.calibration.portfolio and card.calibration.portfolio[0].k == 1


def test_the_card_reports_real_pair_metrics_with_intervals(built):
    real = built["card"].metrics["real"]
    pair = real["pair"]
    assert 0.0 <= pair["auc"] <= 1.0
    lo, hi = pair["auc_ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    assert 0.0 <= pair["eer"] <= 1.0
    assert pair["repeats"] == 2
    assert 0.0 <= real["verify_loo"]["auc"] <= 1.0
    assert real["images"] == ARTISTS * PER_ARTIST and real["artists"] == ARTISTS
    assert real["artists_with_2_or_more"] == ARTISTS
    assert any(k.startswith("cosine + nuisance-aware whitening") for k in real["candidates_pair_auc"])
    assert any("default@2.0.0's recipe" in k for k in real["candidates_pair_auc"])
    assert "synthetic" not in built["card"].metrics
    assert json.loads((built["out"] / "model.json").read_text())["metrics"]["real"]["pair"]["auc"] == pair["auc"]


def test_the_card_judges_every_acquisition_condition_and_ships_quality_bands(built):
    card = built["card"]
    rob = card.metrics["robustness"]
    judged, baseline = rob["judged"], rob["baseline"]
    for c in conditions.CONDITIONS:
        for kind in ("within", "cross", "verify"):
            row = judged[f"{c.name}/{kind}"]
            assert 0.0 <= row["auc"] <= 1.0 and 0.0 <= row["refused"] <= 1.0
            assert {"max_fpr<=0.05", "max_fpr<=0.01", "default"} <= set(row["points"])
            assert f"{c.name}/{kind}" in baseline
    assert "published/published" in judged and "error_versus_discard" in judged
    cal = card.calibration
    assert cal.quality is not None and cal.bands
    assert cal.quality.floor == cal.bands[-1].min_quality
    assert all(b.genuine_pairs is not None and b.portfolio for b in cal.bands)
    report = (built["out"] / "REPORT.md").read_text()
    assert "Does it hold on photographs?" in report and "Targets missed:" in report
    for plot in ("robustness.png", "quality_edc.png"):
        assert plot in card.metrics["plots"] and (built["out"] / plot).read_bytes()[:4] == b"\x89PNG"


def test_training_and_serving_compute_the_same_embedding_and_reference_vectors(built):
    out, card, paths = built["out"], built["card"], built["paths"]
    model = Model.load(out, providers="cpu")
    assert model.has_projection and model.reference_dim == DIM

    chosen = paths[:: max(1, len(paths) // 5)]
    inputs = [model.model_inputs(decode_file(p).image) for p in chosen]
    assert all(x.shape == (GRID * GRID, CROP, CROP, 3) for x in inputs)
    served = model.embed_pictures(inputs)
    trained = np.stack([c.mean(axis=0) for c in crop_vectors(chosen, card.backbone, out / BACKBONE_FILE)])
    assert served.shape == trained.shape == (len(chosen), card.backbone.embedding_dim)
    np.testing.assert_allclose(served, trained, atol=1e-5)

    # the shipped projection is the nuisance-aware one fitted on every corpus crop and every copy (the cached
    # crops of make_real's work dir), calibrated as the card says; plain whitening would give other vectors
    names = [c.name for c in conditions.CONDITIONS]
    crops, _ = robustness.condition_crops(paths, None, card.backbone, out / BACKBONE_FILE, cache=built["work"])
    under = {
        n: robustness.condition_crops(paths, conditions.BY_NAME[n], card.backbone, out / BACKBONE_FILE,
                                      cache=built["work"])[0]
        for n in names
    }  # fmt: skip
    cos = card.head.cosine
    assert cos is not None
    copies = robustness.Copies.of(crops, under)
    whitening = robustness.Recipe(dim=cos.dim, power=cos.power).fit(copies, np.arange(len(paths)), names)
    head = CosineHead(whitening, cos.slope, cos.bias)
    plain = CosineHead(realeval.fit_on(crops, np.arange(len(crops)), cos.dim, cos.power), cos.slope, cos.bias)
    refs = model.reference_vectors(served)
    assert np.abs(refs - plain.project(trained)).max() > 0.05
    assert refs.shape == (len(chosen), DIM)
    np.testing.assert_allclose(refs, head.project(trained), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(refs, axis=1), 1.0, atol=1e-5)

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    projection = ort.InferenceSession(str(out / "head_projection.onnx"), opts, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(refs, projection.run(None, {"embedding": trained.astype(np.float32)})[0], atol=1e-5)

    a, b = refs[:-1], refs[1:]
    np.testing.assert_allclose(model.compare(a, b), head.compare(a, b), atol=1e-5)
    np.testing.assert_allclose(model.pair_scores(served[:-1], served[1:]), head.compare(a, b), atol=1e-5)
    np.testing.assert_allclose(model.symmetric_scores(a, b), model.symmetric_scores(b, a), atol=1e-6)


def test_a_real_model_is_itself_a_backbone_source(built, tmp_path):
    # backbone_from a multi-crop model gives back the single-crop description, and the same recipe again
    base = backbone_from_dir(built["out"], tmp_path)
    assert base.preprocessing.grid == (1, 1) and base.embedding.crop_features is None
    assert (tmp_path / BACKBONE_FILE).read_bytes() == (built["out"] / BACKBONE_FILE).read_bytes()
    again = real_backbone_spec(base, GRID, RESIZE)
    assert again.model_dump() == built["card"].backbone.model_dump()


def test_a_backbone_without_pooled_features_is_refused(built):
    dev = load_card(built["dev"]).backbone
    no_pool = dev.model_copy(update={"embedding": dev.embedding.model_copy(update={"pooled_dim": 0})})
    with pytest.raises(RealModelError, match="no pooled features"):
        real_backbone_spec(no_pool, GRID, RESIZE)


def test_make_real_refuses_fewer_than_four_artists(tmp_path):
    corpus = tmp_path / "corpus"
    synthetic.generate(corpus, 3, 2, seed=0, size=64)
    dev = build_dev_model(tmp_path / "dev")
    with pytest.raises(RealModelError, match="at least 4 artists"):
        make_real(tmp_path / "out", corpus, tmp_path / "work", backbone_from=dev, grid=GRID, resize_shorter=RESIZE)
    assert not (tmp_path / "out").exists()


def test_make_real_refuses_a_corpus_without_a_second_work_of_any_artist(tmp_path):
    corpus = tmp_path / "corpus"
    synthetic.generate(corpus, 5, 1, seed=0, size=64)
    dev = build_dev_model(tmp_path / "dev")
    with pytest.raises(RealModelError, match="2 or more works"):
        make_real(tmp_path / "out", corpus, tmp_path / "work", backbone_from=dev, grid=GRID, resize_shorter=RESIZE)
    assert not (tmp_path / "out").exists()


def test_a_backbone_file_takes_any_crop_size_once_its_spatial_dims_are_free(tmp_path):
    dev = build_dev_model(tmp_path / "dev")
    path = tmp_path / "free.onnx"
    path.write_bytes((dev / BACKBONE_FILE).read_bytes())
    free_spatial_dims(path)
    fixed = ort.InferenceSession(str(dev / BACKBONE_FILE), providers=["CPUExecutionProvider"])
    free = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = free.get_inputs()[0].shape
    assert shape[1:] == ["height", "width", 3]
    x = np.random.default_rng(0).uniform(-1, 1, (2, CROP, CROP, 3)).astype(np.float32)
    # at the export's own size: the very same outputs
    assert np.array_equal(free.run(None, {"image": x})[0], fixed.run(None, {"image": x})[0])
    small = free.run(None, {"image": x[:, :24, :20]})[0]
    assert small.shape == (2, fixed.get_outputs()[0].shape[1]) and np.isfinite(small).all()


def test_a_backbone_whose_output_depends_on_its_size_is_refused_and_left_as_it_was(tmp_path):
    from onnx import helper

    from training.backbone.onnxgraph import init, save, value

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
        ],
        "sized",
        [value("image", "N", 8, 8, 3)],
        [value("embedding", "N", 4)],
        [init("w", np.ones((8 * 8 * 3, 4)))],
    )
    path = tmp_path / "sized.onnx"
    save(graph, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="another input size"):
        free_spatial_dims(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["sized.onnx"]


def test_a_crop_larger_than_the_working_size_is_refused(built, tmp_path):
    base = backbone_from_dir(built["out"], tmp_path)
    with pytest.raises(RealModelError, match="at most the shorter side"):
        real_backbone_spec(base, GRID, RESIZE, crop=RESIZE + 1)


def test_make_real_at_a_smaller_crop_ships_a_model_the_service_runs_identically(tmp_path):
    # crops of 24 px at a proportionally smaller working size: the backbone file's height and width are freed, the
    # card says 24, and the service's embedding is the one training computed
    corpus = tmp_path / "corpus"
    manifest = synthetic.generate(corpus, 6, 2, seed=1, size=64)
    dev = build_dev_model(tmp_path / "dev")
    out = tmp_path / "out"
    card = make_real(
        out, corpus, tmp_path / "work", backbone_from=dev, grid=GRID, resize_shorter=36, crop=24, dim=DIM,
        repeats=2, nested_repeats=1, n_boot=20, judge_boot=0, conditions=["jpeg_q50"], synthetic=(0, 0),
    )  # fmt: skip
    p = card.backbone.preprocessing
    assert (p.crop, p.resize_shorter, p.grid) == ((24, 24), 36, (GRID, GRID))
    assert "24-px crops" in card.backbone.embedding.description
    model = Model.load(out)
    assert model.model_inputs(decode_file(manifest.paths()[0]).image).shape == (GRID * GRID, 24, 24, 3)
    trained = crop_vectors(manifest.paths()[:3], card.backbone, out / BACKBONE_FILE)
    served = [model.embed_pictures([model.model_inputs(decode_file(q).image)])[0] for q in manifest.paths()[:3]]
    for t, s in zip(trained, served, strict=True):
        np.testing.assert_allclose(t.mean(axis=0), s, atol=1e-5)
