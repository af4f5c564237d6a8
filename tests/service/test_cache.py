"""The embedding cache (service/serving/cache.py): an LRU of embedded uploads bounded in bytes, per serving bundle,
keyed by collection, model, image limits and the upload's sha256 — what it keeps and drops, that a hit answers
exactly as a miss while the decoder and the backbone do not run, that it never reaches across collections, and
what it must still refuse. No timing is asserted: the backbone's work is counted (the micro-batcher's
`items_run`, pictures through the backbone) and the decoder's calls (`Embedder.prepare`)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from contract.decode import ImageError, ImageLimits, decode_bytes, digest
from contract.quality import Measures
from service.api.errors import status_of
from service.config import Settings
from service.serving.cache import MB, CacheStats, Key, PictureCache
from service.serving.model import Model
from service.serving.picture import Picture
from service.serving.quality import PictureQuality
from service.serving.runtime import Runtime
from tests.service.apitools import ADMIN, pair, running
from tests.service.conftest import png
from tests.service.test_quality import banded, banded_dir, good, poor  # noqa: F401  (fixtures)

LIMITS = ImageLimits()


# ---- the cache alone ---------------------------------------------------------------------------------------------
def picture(sha: str, dim: int = 8, crops: int = 2) -> Picture:
    rng = np.random.default_rng(int(hashlib.sha256(sha.encode()).hexdigest()[:8], 16))
    vectors = rng.normal(size=(crops, dim)).astype(np.float32)
    measures = Measures(width=48, height=40, bits_per_pixel=8.0, jpeg_quality=None, sharpness=0.5, noise=1.0)
    return Picture(sha, (48, 40), (48, 40), PictureQuality(measures, 0.9), vectors, vectors.mean(axis=0))


def key(cache: PictureCache, sha: str, collection: str = "c", model: str = "m@1", limits: ImageLimits = LIMITS) -> Key:
    return cache.key(collection, model, limits, sha)


SIZE = picture("x").nbytes  # every test picture: 2 crops × 8 floats + the embedding + the record's overhead


def test_least_recently_used_goes_first_within_the_byte_bound() -> None:
    cache = PictureCache(3 * SIZE)
    for sha in "abc":
        cache.put(key(cache, sha), picture(sha))
    assert len(cache) == 3 and cache.nbytes == 3 * SIZE
    assert cache.get(key(cache, "a")) is not None  # a is now more recent than b and c: b is the oldest
    cache.put(key(cache, "d"), picture("d"))
    assert {k.sha256 for k in cache.kept()} == {"a", "c", "d"} and cache.nbytes == 3 * SIZE
    # a larger picture pushes out as many of the oldest as it needs: c, then a (d is the newest)
    big = picture("e", crops=20)
    assert SIZE < big.nbytes < 2 * SIZE
    cache.put(key(cache, "e"), big)
    assert {k.sha256 for k in cache.kept()} == {"d", "e"}
    assert cache.nbytes == SIZE + big.nbytes <= cache.max_bytes
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 0, 3)


def test_a_picture_larger_than_the_whole_bound_is_not_kept() -> None:
    cache = PictureCache(SIZE - 1)
    given = picture("a")
    assert cache.put(key(cache, "a"), given) is given
    assert len(cache) == 0 and cache.nbytes == 0 and cache.get(key(cache, "a")) is None


def test_off_at_zero_keeps_and_counts_nothing() -> None:
    cache = PictureCache(0)
    assert not cache.enabled
    cache.put(key(cache, "a"), picture("a"))
    assert cache.get(key(cache, "a")) is None and len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (0, 0, 0)


def test_every_part_of_the_key_counts() -> None:
    cache = PictureCache(10 * SIZE)
    cache.put(key(cache, "a"), picture("a"))
    assert cache.get(key(cache, "a")) is not None
    assert cache.get(key(cache, "a", collection="other")) is None
    assert cache.get(key(cache, "a", model="m@2")) is None
    assert cache.get(key(cache, "a", limits=dataclasses.replace(LIMITS, max_bytes=1000))) is None
    assert cache.get(key(cache, "b")) is None


def test_forgetting_a_collection_drops_its_entries_and_refuses_keys_made_before() -> None:
    cache = PictureCache(10 * SIZE)
    for collection in ("gone", "kept"):
        cache.put(key(cache, "a", collection), picture("a"))
    in_flight = key(cache, "b", "gone")  # a request of the collection, looked up before the delete
    assert cache.forget("gone") == 1
    assert key(cache, "a", "gone") not in cache and key(cache, "a", "kept") in cache
    cache.put(in_flight, picture("b"))  # it ends after the delete: nothing of "gone" comes back
    assert len(cache) == 1 and key(cache, "b", "gone") not in cache
    cache.put(key(cache, "b", "gone"), picture("b"))  # a collection made again under the id starts afresh
    assert key(cache, "b", "gone") in cache
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    assert cache.stats.evictions == 0  # neither a deleted collection's entries nor a clear are evictions


def test_a_picture_is_kept_only_under_its_own_digest() -> None:
    cache = PictureCache(10 * SIZE)
    with pytest.raises(ValueError):
        cache.put(key(cache, "a"), picture("b"))


def test_kept_arrays_are_read_only_and_own_their_memory() -> None:
    cache = PictureCache(10 * SIZE)
    batch = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)  # a batch's output, two pictures' crops in it
    given = dataclasses.replace(picture("a"), crops=batch[:2], embedding=batch[:2].mean(axis=0))
    kept = cache.put(key(cache, "a"), given)
    assert cache.get(key(cache, "a")) is kept
    assert np.array_equal(kept.crops, given.crops) and kept.crops.base is None
    with pytest.raises(ValueError):
        kept.embedding[0] = 1.0


def test_the_digest_is_the_decoders() -> None:
    data = png(3)
    assert digest(data) == decode_bytes(data).sha256


@pytest.mark.anyio
async def test_a_miss_hashes_each_upload_once(tmp_path: Path, model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    # the cache's key is the sha256 the decoder records: computed once, before decoding, and handed to it
    import contract.decode
    import service.serving.embedder

    hashed: list[int] = []

    def counted(data: bytes) -> str:
        hashed.append(len(data))
        return digest(data)

    monkeypatch.setattr(contract.decode, "digest", counted)
    monkeypatch.setattr(service.serving.embedder, "digest", counted)
    runtime = _runtime(tmp_path / "data", model)
    try:
        pictures = await runtime.scorer._pictures(runtime.bundle, png(11), png(12))
        assert len(hashed) == 2 and [p.sha256 for p in pictures] == [digest(png(11)), digest(png(12))]
    finally:
        runtime.close()


def test_the_setting() -> None:
    assert Settings().embedding_cache_mb == 64
    assert Settings(embedding_cache_mb=0).embedding_cache_mb == 0
    with pytest.raises(ValidationError):
        Settings(embedding_cache_mb=-1)


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUSHPRINT_EMBEDDING_CACHE_MB", "3")
    assert Settings().embedding_cache_mb == 3


def test_stats_count_across_threads() -> None:
    import threading

    stats = CacheStats()
    threads = [threading.Thread(target=lambda: [stats.count(hits=1) for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.hits == 4000


# ---- in the runtime ----------------------------------------------------------------------------------------------
def _runtime(data_dir: Path, model: Model, **values: Any) -> Runtime:
    values = {"batch_max_wait_ms": 2, "gallery_calibration": False, **values}
    return Runtime.build(model, Settings(data_dir=data_dir, gpu_index=False, **values))


@pytest.fixture
def runtime(tmp_path: Path, model: Model) -> Iterator[Runtime]:
    r = _runtime(tmp_path / "data", model)
    yield r
    r.close()


class Work:
    """What the runtime did since the last `took()`: pictures through the backbone, uploads decoded."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch):
        self.runtime = runtime
        self.decoded = 0
        real = runtime.embedder.prepare

        def counted(*args: Any, **kw: Any) -> Any:
            self.decoded += 1
            return real(*args, **kw)

        monkeypatch.setattr(runtime.embedder, "prepare", counted)
        self._seen = (runtime.embedder.batcher.items_run, 0)

    def took(self) -> tuple[int, int]:
        now = (self.runtime.embedder.batcher.items_run, self.decoded)
        since = (now[0] - self._seen[0], now[1] - self._seen[1])
        self._seen = now
        return since


async def _enrol(runtime: Runtime, artist: str, seeds: range, collection: str = "default") -> None:
    portfolios = runtime.portfolios_for(collection)
    portfolios.create_artist(artist, artist.title())
    await portfolios.add_works(artist, [(f"{s}.png", png(s)) for s in seeds])


async def _session(runtime: Runtime, candidate: bytes, others: list[bytes]) -> list[Any]:
    """A dealer's session: one candidate compared with several others, verified and identified."""
    s = runtime.scorer
    return [
        *[await s.compare(candidate, o) for o in others],
        await s.compare(others[0], candidate),
        await s.verify(candidate, "ann"),
        await s.verify(candidate, "bob"),
        await s.identify(candidate, 3),
    ]


def _named(runtime: Runtime, answers: list[Any]) -> str:
    """The answers as text, each work id replaced by its artist and file name."""
    text = repr(answers)
    for artist in ("ann", "bob"):
        for w in runtime.portfolios.list_works(artist):
            text = text.replace(w.id, f"{artist}/{w.filename}")
    return text


@pytest.fixture
def banded_runtime(tmp_path: Path, banded: Model) -> Iterator[Runtime]:  # noqa: F811
    """A runtime on a model whose card has quality bands (a floor that refuses poor pictures)."""
    r = _runtime(tmp_path / "data", banded)
    yield r
    r.close()


@pytest.fixture
def on_off(tmp_path: Path, model: Model) -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes on one model: the cache at its default, and off."""
    on, off = _runtime(tmp_path / "on", model), _runtime(tmp_path / "off", model, embedding_cache_mb=0)
    yield on, off
    on.close()
    off.close()


@pytest.mark.anyio
async def test_a_hit_answers_exactly_as_a_miss(
    on_off: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    on, off = on_off
    for r in (on, off):
        await _enrol(r, "ann", range(1, 4))
        await _enrol(r, "bob", range(4, 7))
    work_on, work_off = Work(on, monkeypatch), Work(off, monkeypatch)
    candidate, others = png(20), [png(21), png(22), png(23)]
    first = await _session(on, candidate, others)
    assert work_on.took() == (4, 4)  # the candidate once, each other once: the rest were hits
    again = await _session(on, candidate, others)
    assert work_on.took() == (0, 0)  # all hits
    plain = await _session(off, candidate, others)
    assert work_off.took() == (11, 11)  # without the cache: every upload of every request
    assert first == again  # every field of every answer
    assert _named(on, first) == _named(off, plain)  # the same, but for the works' ids (each runtime's own)
    assert len(off.bundle.cache) == 0 and off.factory.cache_stats.misses == 0


@pytest.mark.anyio
async def test_the_decoder_and_the_backbone_do_not_run_on_a_hit(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = Work(runtime, monkeypatch)
    stats = runtime.factory.cache_stats
    a, b, c = png(1), png(2), png(3)
    await runtime.scorer.compare(a, b)
    assert work.took() == (2, 2) and (stats.hits, stats.misses) == (0, 2)
    await runtime.scorer.compare(b, a)
    assert work.took() == (0, 0) and (stats.hits, stats.misses) == (2, 2)
    await runtime.scorer.compare(a, c)
    assert work.took() == (1, 1) and (stats.hits, stats.misses) == (3, 3)
    assert len(runtime.bundle.cache) == 3
    assert (
        runtime.bundle.cache.nbytes == 3 * (await runtime.embedder.pictures(runtime.bundle, "default", [a]))[0].nbytes
    )


@pytest.mark.anyio
async def test_scoring_and_enrolment_share_within_a_collection_only(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = Work(runtime, monkeypatch)
    runtime.collections.create("dealer-b")
    candidate, other, enrolled = png(1), png(2), png(3)
    await runtime.scorer.compare(candidate, other)
    assert work.took() == (2, 2)
    await _enrol(runtime, "ann", range(3, 4))  # `enrolled` goes through the backbone once ...
    assert work.took() == (1, 1)
    d = await runtime.scorer.compare(enrolled, candidate)  # ... and a compare of it afterwards does not
    assert work.took() == (0, 0) and [c.work_id for c in d.same_work_as] != []
    runtime.portfolios.create_artist("bob", "Bob")
    await runtime.portfolios.add_works("bob", [("c.png", candidate)])  # the candidate just compared: no backbone
    assert work.took() == (0, 0)
    # the same bytes in another collection: misses, each embedded again there
    await runtime.scorer_for("dealer-b").compare(candidate, other)
    assert work.took() == (2, 2)
    await _enrol(runtime, "ann", range(3, 4), collection="dealer-b")
    assert work.took() == (1, 1)
    assert {k.collection for k in _keys(runtime)} == {"default", "dealer-b"} and len(runtime.bundle.cache) == 6


def _keys(runtime: Runtime) -> list[Key]:
    return runtime.bundle.cache.kept()


@pytest.mark.anyio
async def test_deleting_a_collection_drops_its_entries(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.collections.create("gone")
    await runtime.scorer_for("gone").compare(png(1), png(2))
    await runtime.scorer.compare(png(1), png(3))
    assert len(runtime.bundle.cache) == 4
    runtime.delete_collection("gone")
    assert {k.collection for k in _keys(runtime)} == {"default"} and len(runtime.bundle.cache) == 2
    runtime.collections.create("gone")  # made again under the same id: nothing of the old one is a hit
    work = Work(runtime, monkeypatch)
    await runtime.scorer_for("gone").compare(png(1), png(2))
    assert work.took() == (2, 2)


@pytest.mark.anyio
async def test_a_new_bundle_starts_empty(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    work = Work(runtime, monkeypatch)
    await runtime.scorer.compare(png(1), png(2))
    old = runtime.bundle
    assert work.took() == (2, 2) and len(old.cache) == 2
    runtime.rebuild()  # what a reindex or a model switch does: a new bundle
    assert runtime.bundle is not old and len(runtime.bundle.cache) == 0
    await runtime.scorer.compare(png(1), png(2))
    assert work.took() == (2, 2)
    assert runtime.factory.cache_stats.misses == 4  # the process's counts go on across bundles


@pytest.mark.anyio
async def test_off_at_zero_runs_everything(tmp_path: Path, model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _runtime(tmp_path / "data", model, embedding_cache_mb=0)
    try:
        work = Work(runtime, monkeypatch)
        for _ in range(2):
            await runtime.scorer.compare(png(1), png(2))
            assert work.took() == (2, 2)
        assert len(runtime.bundle.cache) == 0
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_the_bound_holds_in_the_runtime(tmp_path: Path, model: Model) -> None:
    runtime = _runtime(tmp_path / "data", model, embedding_cache_mb=1)
    try:
        one = (await runtime.scorer._pictures(runtime.bundle, png(0)))[0].nbytes
        n = 1 * MB // one + 3  # more distinct pictures than the bound holds
        for seed in range(1, n):
            await runtime.scorer.compare(png(0), png(seed))
        cache = runtime.bundle.cache
        assert cache.nbytes <= 1 * MB and len(cache) == 1 * MB // one
        assert runtime.factory.cache_stats.evictions == n - len(cache)
        # png(0), asked for by every compare, is the most recently used: never evicted
        assert any(k.sha256 == digest(png(0)) for k in _keys(runtime))
        assert not any(k.sha256 == digest(png(1)) for k in _keys(runtime))
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_a_picture_below_the_quality_floor_is_not_cached(
    banded_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = banded_runtime
    work = Work(runtime, monkeypatch)
    for _ in range(2):
        with pytest.raises(ImageError) as e:
            await runtime.scorer.compare(good(), poor())
        assert e.value.code == "image_quality_too_low"
    assert work.took()[1] == 4  # the poor picture was decoded and refused each time
    assert {k.sha256 for k in _keys(runtime)} <= {digest(good())}
    assert not any(k.sha256 == digest(poor()) for k in _keys(runtime))


@pytest.mark.anyio
async def test_a_limit_change_refuses_a_picture_cached_before(runtime: Runtime) -> None:
    a, b = png(1, (64, 60)), png(2)
    await runtime.scorer.compare(a, b)
    assert len(runtime.bundle.cache) == 2
    runtime.embedder.limits = dataclasses.replace(runtime.embedder.limits, max_bytes=len(a) - 1)
    with pytest.raises(ImageError) as e:
        await runtime.scorer.compare(a, b)
    assert e.value.code == "image_too_large" and status_of(e.value) == 413


def test_metrics_count_the_cache_without_naming_collections(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path) as client:
        for _ in range(2):
            assert client.post("/v1/compare", files=pair(1, 2), headers=ADMIN).status_code == 200
        lines = [line for line in client.get("/metrics").text.splitlines() if "embedding_cache" in line]
        figures = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines if not line.startswith("#")}
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        one = runtime.bundle.cache.nbytes / 2
    assert figures == {
        "brushprint_embedding_cache_hits_total": 2.0,
        "brushprint_embedding_cache_misses_total": 2.0,
        "brushprint_embedding_cache_evictions_total": 0.0,
        "brushprint_embedding_cache_shared_total": 0.0,
        "brushprint_embedding_cache_bytes": 2 * one,
        "brushprint_embedding_cache_entries": 2.0,
    }
    assert not any("{" in line for line in lines if not line.startswith("#"))  # no labels, no collection


# ---- single flight -----------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_concurrent_requests_embed_a_shared_upload_once(
    on_off: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dealer's ten compares of one candidate sent at once: the candidate is decoded and embedded once, and every
    answer is the one the runtime without the cache gives."""
    on, off = on_off
    work_on, work_off = Work(on, monkeypatch), Work(off, monkeypatch)
    candidate, others = png(30), [png(31 + i) for i in range(10)]
    together = await asyncio.gather(*(on.scorer.compare(candidate, o) for o in others))
    assert work_on.took() == (11, 11)  # the candidate once, each other once
    stats = on.factory.cache_stats
    assert (stats.misses, stats.shared, stats.hits) == (20, 9, 0) and on.bundle.cache.in_flight == 0
    alone = [await off.scorer.compare(candidate, o) for o in others]
    assert work_off.took() == (20, 20)
    assert together == alone


@pytest.mark.anyio
async def test_the_same_upload_twice_in_one_request_is_embedded_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = Work(runtime, monkeypatch)
    d = await runtime.scorer.compare(png(1), png(1))
    assert work.took() == (1, 1) and runtime.factory.cache_stats.shared == 1
    assert d.score == (await runtime.scorer.compare(png(1), png(1))).score and work.took() == (0, 0)


@pytest.mark.anyio
async def test_no_flight_is_shared_across_collections(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.collections.create("dealer-b")
    work = Work(runtime, monkeypatch)
    await asyncio.gather(runtime.scorer.compare(png(1), png(2)), runtime.scorer_for("dealer-b").compare(png(1), png(3)))
    assert work.took() == (4, 4) and runtime.factory.cache_stats.shared == 0


@pytest.mark.anyio
async def test_a_refused_leader_lets_each_waiter_be_refused_on_its_own(
    banded_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = banded_runtime
    work = Work(runtime, monkeypatch)
    answers = await asyncio.gather(*(runtime.scorer.compare(poor(), good()) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(a, ImageError) and a.code == "image_quality_too_low" for a in answers), answers
    assert runtime.factory.cache_stats.shared == 0 and runtime.bundle.cache.in_flight == 0
    assert work.took()[1] >= 3  # each request decoded the poor picture itself


@pytest.mark.anyio
async def test_a_cancelled_leader_does_not_strand_its_waiters(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leading request goes away (a client disconnect cancels it) while its upload is decoded: the request
    waiting for that upload embeds it on its own and answers as ever."""
    gate, entered = threading.Event(), threading.Event()
    real = runtime.embedder.prepare

    def slow(*args: Any, **kw: Any) -> Any:
        if not gate.is_set():
            entered.set()
            gate.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(runtime.embedder, "prepare", slow)
    candidate = png(1)
    leader = asyncio.ensure_future(runtime.scorer.compare(candidate, png(2)))
    await asyncio.to_thread(entered.wait, 10)
    waiter = asyncio.ensure_future(runtime.scorer.compare(candidate, png(3)))
    for _ in range(100):  # until the waiter is waiting on the leader's flight (its own other upload leads too)
        await asyncio.sleep(0.01)
        if runtime.bundle.cache.in_flight == 3:
            break
    assert runtime.bundle.cache.in_flight == 3
    leader.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await leader
    d = await asyncio.wait_for(waiter, 30)
    assert d.score == (await runtime.scorer.compare(candidate, png(3))).score
    assert runtime.factory.cache_stats.shared == 0 and runtime.bundle.cache.in_flight == 0
