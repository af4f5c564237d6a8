"""service/serving/model.py against a real ONNX model: loading checks, shapes, symmetry, chunked scoring."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from contract.card import load_card
from service.config import Settings
from service.serving import model as model_module
from service.serving.model import Model, ModelError, SessionConfig, choose_providers
from tests.service.conftest import painting


def _batch(model: Model, seeds: range) -> list[np.ndarray]:
    """Each picture's backbone inputs, [n_crops, H, W, 3] as the card's recipe says."""
    return [model.model_inputs(painting(s)) for s in seeds]


def test_loads_what_the_card_says(model: Model, model_dir: Path) -> None:
    card = load_card(model_dir)
    assert model.model_id == card.model_id
    assert model.embedding_dim == card.backbone.embedding_dim
    assert model.providers == ["CPUExecutionProvider"]


def test_embed_shapes_and_determinism(model: Model) -> None:
    x = _batch(model, range(3))
    e1, e2 = model.embed_pictures(x), model.embed_pictures(x)
    assert e1.shape == (3, model.embedding_dim) and e1.dtype == np.float32
    assert np.array_equal(e1, e2)
    assert np.isfinite(e1).all()
    assert not np.allclose(e1[0], e1[1])  # different pictures, different embeddings
    assert model.embed_pictures(x[:0]).shape == (0, model.embedding_dim)
    assert model.embed(np.concatenate(x)[:0]).shape == (0, model.card.backbone.crop_dim)


def test_batch_equals_one_by_one(model: Model) -> None:
    x = _batch(model, range(4))
    together = model.embed_pictures(x)
    alone = np.concatenate([model.embed_pictures(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_scores_are_probabilities_and_symmetric(model: Model) -> None:
    e = model.embed_pictures(_batch(model, range(4)))
    v = model.reference_vectors(e)
    ab = model.symmetric_scores(v[:2], v[2:])
    ba = model.symmetric_scores(v[2:], v[:2])
    assert ab.shape == (2,)
    assert ((ab >= 0) & (ab <= 1)).all()
    np.testing.assert_array_equal(ab, ba)


def test_reference_vectors_and_pair_head_agree(model: Model) -> None:
    e = model.embed_pictures(_batch(model, range(4)))
    v = model.reference_vectors(e)
    if model.has_projection:
        assert v.shape == (4, model.reference_dim)
        # the exported pair head is comparator ∘ projection (checked at export, relied upon here)
        np.testing.assert_allclose(model.pair_scores(e[:2], e[2:]), model.compare(v[:2], v[2:]), atol=1e-5)
    else:
        np.testing.assert_array_equal(v, e)
        with pytest.raises(ModelError):
            model.project(e)


def test_score_against_chunks_agree(model: Model) -> None:
    e = model.embed_pictures(_batch(model, range(7)))
    v = model.reference_vectors(e)
    whole = model.score_against(v[0], v[1:])
    chunked = model.score_against(v[0], v[1:], chunk=2)
    np.testing.assert_allclose(whole, chunked, atol=1e-6)
    np.testing.assert_allclose(whole, model.symmetric_scores(np.repeat(v[:1], 6, axis=0), v[1:]), atol=1e-6)
    assert model.score_against(v[0], v[:0]).shape == (0,)


def build_dev_model(out: Path, **kw: object) -> Path:
    """The dev model (bench/devmodel.py: made with onnx, a training dependency): these tests need graphs with
    particular heads and broken parts; on a serving-only install they are skipped."""
    devmodel = pytest.importorskip("bench.devmodel", reason="needs onnx (the [train] extra) to build test graphs")
    return devmodel.build_dev_model(out, **kw)


def test_seed_head_is_made_symmetric(tmp_path: Path) -> None:
    m = Model.load(build_dev_model(tmp_path / "seed", head="seed"), "cpu")
    assert not m.has_projection and m.reference_dim == m.embedding_dim
    e = m.embed_pictures(_batch(m, range(2)))
    raw_ab, raw_ba = m.pair_scores(e[:1], e[1:]), m.pair_scores(e[1:], e[:1])
    assert not np.allclose(raw_ab, raw_ba)  # the concat head itself is order-dependent
    sym = m.symmetric_scores(e[:1], e[1:])
    np.testing.assert_allclose(sym, (raw_ab + raw_ba) / 2, atol=1e-7)
    np.testing.assert_array_equal(sym, m.symmetric_scores(e[1:], e[:1]))


@pytest.fixture
def dev_copy(tmp_path: Path) -> Path:
    return build_dev_model(tmp_path / "m")


def _edit_card(d: Path, edit) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads((d / "model.json").read_text())
    edit(raw)
    (d / "model.json").write_text(json.dumps(raw))


def test_checksum_mismatch(dev_copy: Path) -> None:
    with open(dev_copy / "head.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        Model.load(dev_copy)


def test_missing_card(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model.json"):
        Model.load(tmp_path)


def test_wrong_input_name(dev_copy: Path) -> None:
    _edit_card(dev_copy, lambda c: c["backbone"].update(input_name="pixels"))
    with pytest.raises(ModelError, match=r"backbone.onnx: ONNX inputs are \['image'\]"):
        Model.load(dev_copy)


def test_wrong_output_name(dev_copy: Path) -> None:
    _edit_card(dev_copy, lambda c: c["head"].update(output_name="prob"))
    with pytest.raises(ModelError, match="head.onnx"):
        Model.load(dev_copy)


def test_wrong_embedding_dim(dev_copy: Path) -> None:
    _edit_card(dev_copy, lambda c: c["backbone"].update(embedding_dim=c["backbone"]["embedding_dim"] + 1))
    with pytest.raises(ModelError, match="the card says"):
        Model.load(dev_copy)


def test_wrong_projection_dim(dev_copy: Path) -> None:
    _edit_card(dev_copy, lambda c: c["head"]["projection"].update(output_dim=3))
    with pytest.raises(ModelError, match="projection"):
        Model.load(dev_copy)


def test_swapped_files(dev_copy: Path, tmp_path: Path) -> None:
    # a graph that is not what the card names, with a matching checksum: caught by the name check
    shutil.copy(dev_copy / "head_comparator.onnx", dev_copy / "head_projection.onnx")
    from contract.card import sha256_file

    _edit_card(
        dev_copy, lambda c: c["files"].update({"head_projection.onnx": sha256_file(dev_copy / "head_projection.onnx")})
    )
    with pytest.raises(ModelError, match="head_projection.onnx"):
        Model.load(dev_copy)


def test_providers() -> None:
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    auto = choose_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert set(auto) <= set(ort.get_available_providers())
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert choose_providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(ModelError, match="cuda"):
            choose_providers("cuda")
    with pytest.raises(ModelError):
        choose_providers("tpu")


def _session_options(m: Model) -> dict[str, ort.SessionOptions]:
    """What onnxruntime reports each session of the model was made with."""
    return {name: part.session.get_session_options() for name, part in m._parts.items()}


LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def test_default_session_is_onnxruntimes_own(model: Model) -> None:
    assert model.session == SessionConfig()
    for name, o in _session_options(model).items():
        assert o.intra_op_num_threads == 0, name  # onnxruntime picks (one per physical core)
        assert o.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL, name
        assert o.enable_cpu_mem_arena, name


@pytest.mark.parametrize(
    ("level", "threads", "arena"), [("basic", 1, False), ("disabled", 2, True), ("extended", 1, False)]
)
def test_session_config_reaches_every_session(
    model_dir: Path, model: Model, level: str, threads: int, arena: bool
) -> None:
    m = Model.load(
        model_dir, "cpu", session=SessionConfig(intra_op_threads=threads, graph_optimization=level, cpu_mem_arena=arena)
    )
    opts = _session_options(m)
    assert set(opts) >= {"backbone", "head"} and len(opts) == len(model._parts)
    for name, o in opts.items():
        assert o.intra_op_num_threads == threads, name
        assert o.graph_optimization_level == LEVELS[level], name
        assert o.enable_cpu_mem_arena is arena, name
    assert m.session.graph_optimization == level
    # how the graph is run changes no answer beyond float rounding
    x = _batch(m, range(2))
    np.testing.assert_allclose(m.embed_pictures(x), model.embed_pictures(x), atol=1e-4)
    v = model.reference_vectors(model.embed_pictures(x))
    np.testing.assert_allclose(m.symmetric_scores(v[:1], v[1:]), model.symmetric_scores(v[:1], v[1:]), atol=1e-5)


def test_session_config_of_settings() -> None:
    s = Settings(intra_op_threads=3, graph_optimization="extended", cpu_mem_arena=False)
    assert SessionConfig.of(s) == SessionConfig(
        intra_op_threads=3,
        graph_optimization="extended",
        cpu_mem_arena=False,
        cuda_conv_algo_search="exhaustive",
        backbone_input="auto",
    )
    o = SessionConfig.of(s).options()
    assert (o.intra_op_num_threads, o.graph_optimization_level, o.enable_cpu_mem_arena) == (
        3,
        LEVELS["extended"],
        False,
    )
    with pytest.raises(ModelError, match="graph_optimization"):
        SessionConfig(graph_optimization="fast")
    with pytest.raises(ModelError, match="intra_op_threads"):
        SessionConfig(intra_op_threads=-1)
    with pytest.raises(ModelError, match="cuda_conv_algo_search"):
        SessionConfig(cuda_conv_algo_search="fastest")


@pytest.mark.parametrize(
    ("setting", "option"), [("heuristic", "HEURISTIC"), ("EXHAUSTIVE", "EXHAUSTIVE"), ("default", "DEFAULT")]
)
def test_the_cudnn_algorithm_search_reaches_the_cuda_provider_only(setting: str, option: str) -> None:
    config = SessionConfig.of(Settings(cuda_conv_algo_search=setting))
    assert config.providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": option}),
        "CPUExecutionProvider",
    ]
    assert config.providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert Settings().cuda_conv_algo_search == "exhaustive"
    with pytest.raises(ValueError, match="cuda_conv_algo_search"):
        Settings(cuda_conv_algo_search="fastest")


def test_cuda_that_does_not_start_is_refused(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an onnxruntime that offers CUDA but cannot start it (libraries missing) falls back to CPU on its own, with a
    # warning; asked for 'cuda', the service must stop with a reason rather than serve on CPU unnoticed
    # emulated on any host: CUDA is offered, and each session falls back to CPU as onnxruntime does when it cannot
    # start CUDA (so on a host where CUDA really works the test means the same)
    offered = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(model_module.ort, "get_available_providers", lambda: offered)
    real_session = ort.InferenceSession

    asked: list[object] = []

    def falls_back(path: str, sess_options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
        asked.extend(providers)
        if any((p[0] if isinstance(p, tuple) else p) == "CUDAExecutionProvider" for p in providers):
            warnings.warn("Failed to start CUDAExecutionProvider; falling back to CPU", UserWarning, stacklevel=2)
        return real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(model_module.ort, "InferenceSession", falls_back)
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"), pytest.raises(ModelError, match="did not start"):
        Model.load(model_dir, "cuda", session=SessionConfig.of(Settings()))
    # CUDA was asked for with the service's cuDNN algorithm search
    assert ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"}) in asked
    # 'auto' takes what there is
    with pytest.warns(UserWarning):
        assert Model.load(model_dir, "auto").providers == ["CPUExecutionProvider"]
    # the service's backbone_input=auto builds the uint8 graph where the backbone is to run on CUDA
    with pytest.warns(UserWarning):
        assert Model.load(model_dir, "auto", session=SessionConfig.of(Settings())).uint8_input


def test_backbone_input_setting() -> None:
    assert Settings().backbone_input == "auto" and SessionConfig().backbone_input == "float32"
    auto = SessionConfig.of(Settings())
    assert auto.input_type(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "uint8"
    assert auto.input_type(["CPUExecutionProvider"]) == "float32"
    for fixed in ("uint8", "float32"):
        assert SessionConfig.of(Settings(backbone_input=fixed.upper())).input_type(["CPUExecutionProvider"]) == fixed
    with pytest.raises(ModelError, match="backbone_input"):
        SessionConfig(backbone_input="int4")
    with pytest.raises(ValueError, match="backbone_input"):
        Settings(backbone_input="int4")


def test_uint8_input_embeds_exactly_as_the_cards_file(model_dir: Path, model: Model) -> None:
    u8 = Model.load(model_dir, "cpu", session=SessionConfig(backbone_input="uint8"))
    assert u8.uint8_input and not model.uint8_input and u8.model_id == model.model_id
    pictures = [painting(s) for s in range(3)]
    raw, floats = [u8.model_inputs(p) for p in pictures], [model.model_inputs(p) for p in pictures]
    assert all(x.dtype == np.uint8 and x.shape == f.shape for x, f in zip(raw, floats, strict=True))
    assert np.array_equal(u8.embed_pictures(raw), model.embed_pictures(floats))
    with pytest.raises(ModelError, match="takes uint8 crops"):
        u8.embed(floats[0])  # normalised floats are never cast to bytes
