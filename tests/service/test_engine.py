"""service/serving/ end to end (no HTTP) against a real model: the runtime's scorer (compare, verify, identify) and
portfolios, restarts, model and recipe changes, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from bench.modelcopy import recipe_copy
from contract.card import load_card
from contract.decode import ImageError, decode_bytes
from contract.operating import equal_error_point, rate_upper, rates_at
from service.api.errors import status_of
from service.config import Settings
from service.errors import ServiceError
from service.serving.model import Model, SessionConfig
from service.serving.runtime import Runtime
from service.serving.scorer import Candidate, Decision, Verdict
from service.serving.strictness import Strictness, portfolio_table
from tests.service.conftest import encode, painting, png

pytestmark = pytest.mark.anyio


def settings(data_dir: Path, **values: Any) -> Settings:
    return Settings(data_dir=data_dir, gpu_index=False, **values)


@pytest.fixture
def runtime(tmp_path: Path, model: Model):  # type: ignore[no-untyped-def]
    e = Runtime.build(model, settings(tmp_path / "data", batch_max_size=8, batch_max_wait_ms=10))
    yield e
    e.close()


async def _error(coro) -> ServiceError | ImageError:  # type: ignore[no-untyped-def]
    with pytest.raises((ServiceError, ImageError)) as info:
        await coro
    return info.value


def _originals(runtime: Runtime) -> list[Path]:
    root = runtime.bundle.view("default").gallery.data_dir / "originals"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def _enrol(runtime: Runtime, artist: str, seeds: range) -> list[str]:
    if artist not in {a.id for a in runtime.portfolios.list_artists(0, 1000)[0]}:
        runtime.portfolios.create_artist(artist, artist.title())
    works = await runtime.portfolios.add_works(artist, [(f"{s}.png", png(s)) for s in seeds])
    return [w.id for w in works]


async def test_compare_is_symmetric_and_calibrated(runtime: Runtime, model: Model) -> None:
    a, b = png(1), png(2)
    ab = await runtime.scorer.compare(a, b)
    ba = await runtime.scorer.compare(b, a)
    assert isinstance(ab, Decision)
    assert ab.score == ba.score
    assert 0.0 <= ab.score <= 1.0
    cal = model.card.calibration
    # the verdict's lower point is the card's recommended (equal-error) one; its strict point max_fpr 0.01
    assert ab.points is not None and ab.points.strict is not None
    low = ab.points.equal_error
    assert (low.threshold, low.rule) == (cal.recommended_threshold, cal.recommended_rule)
    assert ab.threshold == ab.points.strict.threshold and ab.rule == "max_fpr<=0.01"
    assert ab.match == (ab.score >= ab.threshold)
    assert (ab.expected_fpr, ab.expected_fnr) == rates_at(cal.pair, ab.threshold)
    # bounds for the card's counts; a card that records none has none (null), never an invented one
    assert ab.expected_fpr_upper == rate_upper(ab.expected_fpr, cal.impostor_pairs)
    assert ab.expected_fnr_upper == rate_upper(ab.expected_fnr, cal.genuine_pairs)
    assert ab.model == model.model_id
    assert ab.images == (decode_bytes(a).sha256, decode_bytes(b).sha256)


async def test_compare_score_is_the_models(runtime: Runtime, model: Model) -> None:
    a, b = painting(3), painting(4)
    d = await runtime.scorer.compare(encode(a), encode(b))
    e = model.embed_pictures([model.model_inputs(a), model.model_inputs(b)])
    v = model.reference_vectors(e)
    # batch composition may move the last float bits of an embedding, hence a tolerance
    assert d.score == pytest.approx(float(model.symmetric_scores(v[:1], v[1:])[0]), abs=1e-5)


async def test_compare_strictness(runtime: Runtime) -> None:
    d = await runtime.scorer.compare(png(1), png(2), Strictness(threshold=0.0))
    assert d.match and d.threshold == 0.0 and d.rule == "threshold=0"
    above = min(1.0, d.score + 1e-4)
    strict = await runtime.scorer.compare(png(1), png(2), Strictness(threshold=above))
    assert strict.match is (d.score >= above)
    d = await runtime.scorer.compare(png(1), png(2), Strictness(max_fpr=0.05))
    assert d.expected_fpr <= 0.05 and d.rule == "max_fpr<=0.05"


async def test_compare_bad_uploads(runtime: Runtime) -> None:
    assert (await _error(runtime.scorer.compare(b"", png(1)))).code == "empty_image"
    assert (await _error(runtime.scorer.compare(png(1), b"not an image at all"))).code == "unsupported_format"
    assert (await _error(runtime.scorer.compare(png(1), encode(painting(1, (8, 8)))))).code == "image_too_small"


async def test_concurrent_compares_batch_and_match_sequential(runtime: Runtime) -> None:
    pairs = [(png(s), png(s + 100)) for s in range(6)]
    together = await asyncio.gather(*(runtime.scorer.compare(a, b) for a, b in pairs))
    assert max(runtime.embedder.batcher.recent_batch_sizes) > 1
    alone = [await runtime.scorer.compare(a, b) for a, b in pairs]
    for t, s in zip(together, alone, strict=True):
        assert t.score == pytest.approx(s.score, abs=1e-5)


async def test_enrol_and_verify(runtime: Runtime, model: Model) -> None:
    ids = await _enrol(runtime, "monet", range(10, 14))
    v = await runtime.scorer.verify(png(14), "monet")
    assert isinstance(v, Verdict)
    agg = model.card.calibration.aggregation
    assert v.portfolio_size == 4 and v.artist_id == "monet"
    assert len(v.top_references) == min(agg.top_m, 4)
    assert {r.work_id for r in v.top_references} <= set(ids) and v.same_work_as == ()
    scores = [r.score for r in v.top_references]
    assert scores == sorted(scores, reverse=True)
    assert v.score == pytest.approx(float(np.mean(scores)), abs=1e-6)
    table, k = portfolio_table(model.card.calibration, 4)
    assert v.threshold is not None and (v.expected_fpr, v.expected_fnr) == rates_at(table.rows, v.threshold)
    if k is not None:  # verify's lower point is the EER point of the portfolio table it is judged by
        assert v.points is not None
        low = v.points.equal_error
        assert (low.threshold, low.rule) == equal_error_point(table.rows, f"the k={k} portfolio calibration")
    assert v.match == (v.score >= v.threshold) and v.model == model.model_id
    # a one-work portfolio scores exactly like comparing the picture with that work
    await _enrol(runtime, "solo", range(15, 16))
    solo = await runtime.scorer.verify(png(16), "solo")
    same = await runtime.scorer.compare(png(16), png(15))
    assert solo.score == pytest.approx(same.score, abs=1e-5)
    assert solo.portfolio_size == 1 and solo.threshold is not None
    # judged by the table of the smallest simulated portfolio
    solo_table = portfolio_table(model.card.calibration, 1)[0]
    assert (solo.expected_fpr, solo.expected_fnr) == rates_at(solo_table.rows, solo.threshold)


async def test_verify_errors(runtime: Runtime) -> None:
    e = await _error(runtime.scorer.verify(png(1), "nobody"))
    assert (status_of(e), e.code) == (404, "unknown_artist")
    runtime.portfolios.create_artist("empty", "Nobody Yet")
    e = await _error(runtime.scorer.verify(png(1), "empty"))
    assert (status_of(e), e.code) == (409, "empty_portfolio")
    e = await _error(runtime.scorer.verify(b"\x89PNG\r\n\x1a\n", "nobody"))
    assert e.code == "unknown_artist"  # the cheap check comes before any image work


async def test_identify_ranks_by_the_verify_score(runtime: Runtime) -> None:
    await _enrol(runtime, "monet", range(20, 24))
    await _enrol(runtime, "degas", range(30, 33))
    await _enrol(runtime, "manet", range(40, 41))
    query = png(21)  # an enrolled work of monet's: left out of monet's portfolio, as verify leaves it out
    found = await runtime.scorer.identify(query, k=3)
    ranked = found.candidates
    assert found.model == runtime.model_id
    assert [c.work_id for c in found.same_work_as] == [runtime.portfolios.list_works("monet")[1].id]
    assert all(isinstance(c, Candidate) for c in ranked)
    assert {c.artist_id for c in ranked} == {"monet", "degas", "manet"}
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    for c in ranked:
        v = await runtime.scorer.verify(query, c.artist_id)
        assert c.score == pytest.approx(v.score, abs=1e-6)
        assert c.references_scored == v.portfolio_size
        assert c.name == c.artist_id.title()
    assert {c.artist_id: c.references_scored for c in ranked}["monet"] == 3
    assert len((await runtime.scorer.identify(query, k=1)).candidates) == 1
    for bad in (0, 51, "3", 2.5):
        assert (await _error(runtime.scorer.identify(query, k=bad))).code == "invalid_k"  # type: ignore[arg-type]


async def test_identify_empty_gallery(runtime: Runtime) -> None:
    found = await runtime.scorer.identify(png(1), k=5)
    assert (found.candidates, found.model) == ([], runtime.model_id)
    assert found.open_set.verdict == "not_consistent" and found.open_set.score is None


async def test_bad_file_in_enrolment_leaves_nothing(runtime: Runtime) -> None:
    runtime.portfolios.create_artist("monet", "Monet")
    good, truncated = png(1), encode(painting(2, (64, 64)), "JPEG")[:300]
    e = await _error(runtime.portfolios.add_works("monet", [("a.png", good), ("b.jpg", truncated), ("c.png", png(3))]))
    assert (status_of(e), e.code) == (422, "corrupt_image")
    assert "b.jpg" in e.message
    assert (
        runtime.portfolios.list_works("monet") == []
        and _originals(runtime) == []
        and len(runtime.bundle.view("default").gallery) == 0
    )
    e = await _error(runtime.portfolios.add_works("monet", [("a.png", good), ("a-again.png", good)]))
    assert (status_of(e), e.code) == (409, "duplicate_work")
    assert runtime.portfolios.list_works("monet") == [] and _originals(runtime) == []
    e = await _error(runtime.portfolios.add_works("nobody", [("a.png", good)]))
    assert e.code == "unknown_artist"
    assert (await _error(runtime.portfolios.add_works("monet", []))).code == "no_files"


async def test_works_crud(runtime: Runtime) -> None:
    ids = await _enrol(runtime, "monet", range(3))
    works = runtime.portfolios.list_works("monet")
    assert [w.id for w in works] == ids and works[0].filename == "0.png"
    assert (await _error(runtime.portfolios.add_works("monet", [("again.png", png(1))]))).code == "duplicate_work"
    runtime.portfolios.delete_work("monet", ids[1])
    assert [w.id for w in runtime.portfolios.list_works("monet")] == [ids[0], ids[2]]
    with pytest.raises(ServiceError) as e:
        runtime.portfolios.delete_work("monet", ids[1])
    assert (status_of(e.value), e.value.code) == (404, "unknown_work")
    assert (await runtime.scorer.verify(png(9), "monet")).portfolio_size == 2
    runtime.portfolios.delete_artist("monet")
    assert (await _error(runtime.scorer.verify(png(9), "monet"))).code == "unknown_artist"
    assert len(runtime.bundle.view("default").gallery) == 0 and _originals(runtime) == []


def test_artist_validation(runtime: Runtime) -> None:
    a = runtime.portfolios.create_artist("vermeer", "  Johannes Vermeer ", {"school": "Delft"})
    assert (a.id, a.name, a.meta, a.works) == ("vermeer", "Johannes Vermeer", {"school": "Delft"}, 0)
    with pytest.raises(ServiceError) as e:
        runtime.portfolios.create_artist("vermeer", "Other")
    assert (status_of(e.value), e.value.code) == (409, "artist_exists")
    for kwargs, code in [
        ({"artist_id": "x", "name": ""}, "invalid_name"),
        ({"artist_id": "x", "name": "n", "meta": {"v": float("nan")}}, "invalid_meta"),
        ({"artist_id": "x", "name": "n", "meta": {"big": "x" * 20_000}}, "invalid_meta"),
        *(({"artist_id": bad, "name": "n"}, "invalid_artist_id") for bad in ("", "a b", "x" * 65, "../etc", "é")),
    ]:
        with pytest.raises(ServiceError) as e:
            runtime.portfolios.create_artist(**kwargs)  # type: ignore[arg-type]
        assert e.value.code == code
    with pytest.raises(ServiceError) as e:
        runtime.portfolios.list_artists(0, 0)
    assert e.value.code == "invalid_pagination"
    assert runtime.portfolios.list_artists(0, 10)[1] == 1


async def test_restart_keeps_artists_and_works(tmp_path: Path, model: Model) -> None:
    first = Runtime.build(model, settings(tmp_path / "data"))
    ids = await _enrol(first, "monet", range(5, 8))
    before = await first.scorer.verify(png(9), "monet")
    first.close()
    second = Runtime.build(model, settings(tmp_path / "data"))
    try:
        assert [a.id for a in second.portfolios.list_artists(0, 10)[0]] == ["monet"]
        assert [w.id for w in second.portfolios.list_works("monet")] == ids
        after = await second.scorer.verify(png(9), "monet")
        assert after.score == pytest.approx(before.score, abs=1e-6)
        assert [r.work_id for r in after.top_references] == [r.work_id for r in before.top_references]
        assert [r.score for r in after.top_references] == pytest.approx([r.score for r in before.top_references])
        assert second.ready()["status"] == "ok"
    finally:
        second.close()


async def test_model_change_requires_reindex(tmp_path: Path, model: Model, other_model: Model) -> None:
    first = Runtime.build(model, settings(tmp_path / "data"))
    await _enrol(first, "monet", range(3))
    first.close()
    assert other_model.model_id != model.model_id
    runtime = Runtime.build(other_model, settings(tmp_path / "data"))
    try:
        r = runtime.ready()
        assert r["reindex_required"] and r["works_missing_embedding"] == 3 and r["status"] == "reindex_required"
        assert (await _error(runtime.scorer.verify(png(9), "monet"))).code == "reindex_required"
        assert status_of(await _error(runtime.scorer.identify(png(0), 3))) == 409
        assert (await runtime.scorer.compare(png(0), png(1))).model == other_model.model_id  # no gallery involved
        result = runtime.reindex()
        assert result.embedded == 3 and result.failed == []
        assert not runtime.ready()["reindex_required"]
        v = await runtime.scorer.verify(png(9), "monet")
        assert v.portfolio_size == 3 and v.model == other_model.model_id
    finally:
        runtime.close()


async def test_a_reindex_beside_the_server_needs_no_restart(tmp_path: Path, model: Model, other_model: Model) -> None:
    first = Runtime.build(model, settings(tmp_path / "data"))
    await _enrol(first, "monet", range(3))
    first.close()
    serving = Runtime.build(other_model, settings(tmp_path / "data"))
    try:
        assert serving.ready()["reindex_required"]
        cli = Runtime.build(other_model, settings(tmp_path / "data"))  # `python -m service reindex`, another process
        assert cli.reindex().embedded == 3
        cli.close()
        assert not serving.ready()["reindex_required"]
        assert (await serving.scorer.verify(png(9), "monet")).portfolio_size == 3
    finally:
        serving.close()


async def test_recipe_change_gives_a_new_model_id_and_requires_reindex(
    tmp_path: Path, model: Model, model_dir: Path
) -> None:
    """The same files with another crop recipe make other embeddings: the model id says so, and the works stored
    under the old id are not served under the new recipe until they are re-embedded."""
    first = Runtime.build(model, settings(tmp_path / "data"))
    await _enrol(first, "monet", range(3))
    before = await first.scorer.verify(png(9), "monet")
    first.close()
    p = model.card.backbone.preprocessing
    regridded = recipe_copy(model_dir, tmp_path / "regridded", grid=(2, 1), resize_shorter=p.crop[0] + 32)
    other = Model.load(regridded, "cpu")
    assert other.card.files == model.card.files and other.card.version == model.card.version
    assert other.model_id != model.model_id
    runtime = Runtime.build(other, settings(tmp_path / "data"))
    try:
        assert runtime.ready()["reindex_required"] and runtime.ready()["works_missing_embedding"] == 3
        assert (await _error(runtime.scorer.verify(png(9), "monet"))).code == "reindex_required"
        assert runtime.reindex().embedded == 3
        after = await runtime.scorer.verify(png(9), "monet")
        assert after.model == other.model_id and after.portfolio_size == 3
        assert after.score != pytest.approx(before.score, abs=1e-6)  # the new recipe's embeddings, not the old
    finally:
        runtime.close()


def test_from_settings(tmp_path: Path, model_dir: Path) -> None:
    s = Settings(
        model_dir=model_dir,
        data_dir=tmp_path / "d",
        database_url=None,
        max_upload_bytes=1000,
        max_request_bytes=1000,
        max_pixels=5000,
        allowed_formats="png, jpeg",  # type: ignore[arg-type]  # the environment's comma form
        batch_max_size=4,
        batch_max_wait_ms=2,
        max_queue=9,
        providers="cpu",
        identify_shortlist=7,
    )
    e = Runtime.from_settings(s)
    try:
        assert e.embedder.limits.max_bytes == 1000 and e.embedder.limits.formats == {"PNG", "JPEG"}
        assert (e.embedder.batcher.max_batch, e.embedder.batcher.max_queue, e.settings.identify_shortlist) == (4, 9, 7)
        assert e.model_id == load_card(model_dir).model_id
        assert (tmp_path / "d" / "brushprint.db").is_file()
        r = e.ready()
        assert r["ready"] and r["store"] and r["providers"] == ["CPUExecutionProvider"]
    finally:
        e.close()


def test_from_real_settings(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import Settings

    monkeypatch.setenv("BRUSHPRINT_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("BRUSHPRINT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("BRUSHPRINT_PROVIDERS", "cpu")
    e = Runtime.from_settings(Settings())
    try:
        assert (
            e.embedder.limits.max_pixels == 200_000_000
            and e.embedder.limits.decode_pixels == 40_000_000
            and "WEBP" in e.embedder.limits.formats
        )
        # the defaults are the Settings' own: nothing in the runtime repeats them
        assert e.settings.identify_shortlist == Settings.model_fields["identify_shortlist"].default == 200
        assert e.embedder.batcher.max_queue == Settings.model_fields["max_queue"].default
        assert (tmp_path / "d" / "brushprint.db").is_file()
        # batch_max_size unset: one 16-crop picture per backbone run on CPU, settled once, read by all
        assert e.settings.batch_max_size == e.embedder.batcher.max_batch == e.ready()["batch_max_size"] == 16
        assert e.bundle.model.session == SessionConfig.of(Settings())
    finally:
        e.close()


def test_session_settings_reach_the_served_model_and_the_staged_one(
    tmp_path: Path, model_dir: Path, other_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the settings an operator gives reach every onnxruntime session of the model the runtime loads, and of a
    # model staged beside it (an upgrade's BundleFactory.load)
    monkeypatch.setenv("BRUSHPRINT_INTRA_OP_THREADS", "1")
    monkeypatch.setenv("BRUSHPRINT_GRAPH_OPTIMIZATION", "basic")
    monkeypatch.setenv("BRUSHPRINT_CPU_MEM_ARENA", "false")
    monkeypatch.setenv("BRUSHPRINT_BATCH_MAX_SIZE", "48")
    monkeypatch.setenv("BRUSHPRINT_BACKBONE_INPUT", "uint8")
    e = Runtime.from_settings(Settings(model_dir=model_dir, data_dir=tmp_path / "d", providers="cpu", gpu_index=False))
    try:
        staged = e.factory.load(other_model.model_dir).model
        for m in (e.bundle.model, staged):
            assert m.session == SessionConfig(
                intra_op_threads=1, graph_optimization="basic", cpu_mem_arena=False, backbone_input="uint8"
            )
            assert m.uint8_input  # the backbone built with the card's normalisation in front, even on CPU
            for part in m._parts.values():
                o = part.session.get_session_options()
                assert (o.intra_op_num_threads, o.enable_cpu_mem_arena) == (1, False)
                assert o.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        assert e.embedder.batcher.max_batch == e.ready()["batch_max_size"] == 48  # set: kept
    finally:
        e.close()


async def test_enrolment_larger_than_the_queue(tmp_path: Path, model: Model) -> None:
    # an idle server must not shed its own enrolment because one request holds more files than the queue
    small = Runtime.build(model, settings(tmp_path / "data", batch_max_size=16, max_queue=2))
    try:
        assert len(await _enrol(small, "monet", range(30, 35))) == 5
        assert len(small.portfolios.list_works("monet")) == 5
    finally:
        small.close()
