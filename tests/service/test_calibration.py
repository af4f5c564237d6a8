"""service/serving/calibration.py: gallery calibration tables from enrolled works (build_tables), kept current off the
request path (GalleryCalibrator), taking over from the card's only when at least as certain (choose), and named —
source, counts, confidence, why — in every compare/verify reply (runtime and HTTP). The small-gallery case of issue
15 (14 same-artist works: 14 genuine / 56 impostor verify trials) answers max_fpr=0.001 with 422."""

from __future__ import annotations

import threading
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import beta

import service.serving.calibration as calibration
from contract.aggregation import aggregate
from contract.calibration import threshold_table
from contract.card import Aggregation
from contract.operating import Table, equal_error_point, rate_upper, rates_at
from service.config import Settings
from service.errors import ServiceError
from service.serving.calibration import GalleryCalibrator, GalleryTables, build_tables, choose, eligible_artists
from service.serving.model import Model
from service.serving.runtime import Runtime
from service.serving.strictness import Strictness
from tests.service.apitools import enrol, error_code, new_key, one, pair, running
from tests.service.conftest import png

AGG = Aggregation(top_m=2)


def dot_scorer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A monotone function of the dot product of unit vectors, in [0, 1]."""
    return (np.sum(np.asarray(a) * np.asarray(b), axis=1) + 1.0) / 2.0


def clustered(works: dict[str, int], dim: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Unit vectors clustered per artist: (artist of each row, vectors)."""
    rng = np.random.default_rng(seed)
    ids, vecs = [], []
    for artist, n in works.items():
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        for _ in range(n):
            v = centre + spread * rng.normal(size=dim)
            vecs.append(v / np.linalg.norm(v))
            ids.append(artist)
    return np.array(ids), np.array(vecs, np.float32)


GALLERY = {"a": 4, "b": 3, "c": 2, "d": 5, "solo": 1}  # "solo" is not eligible (one work) but is an impostor


# ---- build_tables -------------------------------------------------------------------------------------------
def test_too_few_artists_with_two_works_give_no_tables() -> None:
    ids, vecs = clustered({"a": 3, "b": 2, "x": 1, "y": 1, "z": 1})
    assert eligible_artists(ids) == ["a", "b"]
    assert build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=3) is None
    assert build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=2) is not None
    one, one_vecs = clustered({"a": 5})
    assert build_tables(one, one_vecs, dot_scorer, AGG, version=1, min_artists=1) is None  # nobody to be impostor
    empty = np.zeros((0, 16), np.float32)
    assert build_tables(np.array([], dtype=str), empty, dot_scorer, AGG, version=1, min_artists=2) is None


def test_pair_table_counts_every_within_and_cross_artist_pair_of_a_small_gallery() -> None:
    ids, vecs = clustered(GALLERY)
    t = build_tables(ids, vecs, dot_scorer, AGG, version=7, min_artists=2)
    assert isinstance(t, GalleryTables)
    assert t.version == 7 and t.artists == 4
    n = len(ids)
    within = [(i, j) for i, j in combinations(range(n), 2) if ids[i] == ids[j]]
    cross = [(i, j) for i, j in combinations(range(n), 2) if ids[i] != ids[j]]
    assert t.genuine_pairs == len(within) == 6 + 3 + 1 + 10
    assert t.impostor_pairs == len(cross)
    # the very table threshold_table makes of those pairs' scores
    s = [dot_scorer(vecs[[i]], vecs[[j]])[0] for i, j in within + cross]
    y = np.array([True] * len(within) + [False] * len(cross))
    want = threshold_table(y, np.array(s))
    for got, w in zip(t.pair, want, strict=True):
        assert got.threshold == w.threshold
        assert (got.fpr, got.fnr, got.precision) == pytest.approx((w.fpr, w.fnr, w.precision), abs=1e-6)


def test_rates_are_monotone_and_separated_clusters_are_told_apart() -> None:
    ids, vecs = clustered(GALLERY, spread=0.05)
    t = build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=2)
    assert t is not None
    for table in (t.pair, t.portfolio):
        ts = [r.threshold for r in table]
        assert ts == sorted(ts)
        fprs, fnrs = [r.fpr for r in table], [r.fnr for r in table]
        assert all(a >= b for a, b in zip(fprs, fprs[1:], strict=False))
        assert all(a <= b for a, b in zip(fnrs, fnrs[1:], strict=False))
        assert (table[0].fpr, table[0].fnr) == (1.0, 0.0)
        threshold, _ = equal_error_point(table, "test")
        row = next(r for r in table if r.threshold == threshold)
        assert row.fpr <= 0.02 and row.fnr <= 0.02
    # overlapping clusters: the same gallery layout is much harder
    noisy_ids, noisy = clustered(GALLERY, spread=3.0, seed=1)
    hard = build_tables(noisy_ids, noisy, dot_scorer, AGG, version=1, min_artists=2)
    assert hard is not None
    threshold, _ = equal_error_point(hard.pair, "test")
    hard_row = next(r for r in hard.pair if r.threshold == threshold)
    assert hard_row.fpr + hard_row.fnr > 0.1


def test_portfolio_table_is_leave_one_out_over_eligible_works() -> None:
    ids, vecs = clustered(GALLERY, spread=0.5, seed=2)
    t = build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=2)
    assert t is not None
    artists = list(GALLERY)
    eligible = [a for a in artists if GALLERY[a] >= 2]
    assert t.genuine_trials == sum(GALLERY[a] for a in eligible) == 14
    assert t.impostor_trials == t.genuine_trials * (len(artists) - 1)
    # rebuild by hand: each eligible work against the rest of its artist's portfolio, and against every other
    # artist's whole portfolio, aggregated as verify aggregates
    ts, ty = [], []
    for q in range(len(ids)):
        if ids[q] not in eligible:
            continue
        scores = dot_scorer(np.repeat(vecs[[q]], len(ids), axis=0), vecs)
        own = [i for i in range(len(ids)) if ids[i] == ids[q] and i != q]
        ts.append(aggregate(scores[own], AGG))
        ty.append(True)
        for a in artists:
            if a != ids[q]:
                ts.append(aggregate(scores[ids == a], AGG))
                ty.append(False)
    want = threshold_table(np.array(ty), np.array(ts))
    for got, w in zip(t.portfolio, want, strict=True):
        assert (got.fpr, got.fnr) == pytest.approx((w.fpr, w.fnr), abs=1e-6)


def test_large_galleries_are_sampled_within_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "MAX_PAIRS", 40)
    monkeypatch.setattr(calibration, "MAX_QUERIES", 12)
    monkeypatch.setattr(calibration, "MAX_IMPOSTOR_PORTFOLIOS", 3)
    works = {f"artist{i}": 6 for i in range(10)}
    ids, vecs = clustered(works)
    t = build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=2)
    assert t is not None
    assert t.genuine_pairs == 40 and t.impostor_pairs == 40  # 10 * 15 within pairs and plenty of cross pairs
    assert t.genuine_trials == 12 and t.impostor_trials == 12 * 3
    again = build_tables(ids, vecs, dot_scorer, AGG, version=1, min_artists=2)
    assert again == t, "a fixed seed: the same gallery gives the same tables"


def test_sampled_cross_artist_pairs_are_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    """The impostor count is what the bounds rest on: a pair drawn twice must not count twice."""
    monkeypatch.setattr(calibration, "MAX_PAIRS", 300)
    ids, vecs = clustered({f"artist{i}": 3 for i in range(10)})  # 435 pairs, 405 cross-artist: sampled
    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def recording(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        calls.append((a, b))
        return dot_scorer(a, b)

    t = build_tables(ids, vecs, recording, AGG, version=1, min_artists=2)
    assert t is not None and t.impostor_pairs == 300
    a, b = calls[1]  # genuine pairs first, then the impostor sample
    rows = {tuple(sorted((x.tobytes(), y.tobytes()))) for x, y in zip(a, b, strict=True)}
    assert len(rows) == len(a) == 300


# ---- GalleryCalibrator --------------------------------------------------------------------------------------
class FakeGallery:
    """A snapshot source whose version and contents the test moves; `hold` blocks snapshots until set."""

    def __init__(self, works: dict[str, int]):
        self.version = 1
        self.ids, self.vecs = clustered(works)
        self.calls = 0
        self.fail = False
        self.hold = threading.Event()
        self.hold.set()

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        self.calls += 1
        assert self.hold.wait(10)
        if self.fail:
            raise RuntimeError("database went away")
        return self.version, self.ids, self.vecs


def calibrator(gallery: FakeGallery, **kw: Any) -> GalleryCalibrator:
    return GalleryCalibrator(gallery.snapshot, dot_scorer, AGG, min_artists=2, **kw)


def test_a_new_version_starts_one_rebuild() -> None:
    g = FakeGallery({"a": 3, "b": 3})
    cal = calibrator(g)
    assert cal.tables is None
    g.hold.clear()
    cal.poke(1)
    cal.poke(1)  # a rebuild is running: no second one
    cal.poke(2)
    g.hold.set()
    cal.wait(10)
    assert g.calls == 1
    assert cal.tables is not None and cal.tables.version == 1
    assert cal.tables.genuine_pairs == 6 and cal.tables.impostor_pairs == 9
    cal.poke(1)  # the tables' version: nothing to do
    cal.wait(10)
    assert g.calls == 1
    g.version = 2
    cal.poke(2)
    cal.wait(10)
    assert g.calls == 2 and cal.tables.version == 2


def test_poke_never_waits_for_the_rebuild() -> None:
    g = FakeGallery({"a": 3, "b": 3})
    cal = calibrator(g)
    g.hold.clear()
    cal.poke(1)
    assert cal.tables is None  # requests go on with the previous (here: no) tables
    g.hold.set()
    cal.wait(10)
    assert cal.tables is not None


def test_disabled_never_builds() -> None:
    g = FakeGallery({"a": 3, "b": 3})
    cal = calibrator(g, enabled=False)
    for v in (1, 2, 3):
        cal.poke(v)
    cal.wait(10)
    assert g.calls == 0 and cal.tables is None


def test_a_failing_snapshot_leaves_the_previous_tables_and_is_retried() -> None:
    g = FakeGallery({"a": 3, "b": 3})
    cal = calibrator(g)
    assert cal.refresh() is not None
    before = cal.tables
    g.version, g.fail = 2, True
    cal.poke(2)
    cal.wait(10)
    assert g.calls == 2 and cal.tables is before
    cal.poke(2)  # not marked as built: the next request tries again
    cal.wait(10)
    assert g.calls == 3 and cal.tables is before
    g.fail = False
    cal.poke(2)
    cal.wait(10)
    assert cal.tables is not None and cal.tables.version == 2


def test_a_gallery_too_small_is_remembered_and_shrinking_drops_the_tables() -> None:
    g = FakeGallery({"a": 3, "b": 1})
    cal = calibrator(g)
    cal.poke(1)
    cal.wait(10)
    assert cal.tables is None and g.calls == 1
    cal.poke(1)  # built (as "too small") for this version already
    cal.wait(10)
    assert g.calls == 1
    g.version, (g.ids, g.vecs) = 2, clustered({"a": 3, "b": 2})
    cal.poke(2)
    cal.wait(10)
    assert cal.tables is not None and cal.tables.version == 2
    g.version, (g.ids, g.vecs) = 3, clustered({"a": 3})
    cal.poke(3)
    cal.wait(10)
    assert cal.tables is None, "once the gallery cannot speak for itself, the card's tables apply again"


# ---- runtime -------------------------------------------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _runtime(tmp_path: Path, model: Model, **values: Any) -> Runtime:
    values = {"gallery_calibration_min_artists": 2, "batch_max_wait_ms": 2, **values}
    return Runtime.build(model, Settings(data_dir=tmp_path / "data", gpu_index=False, **values))


async def _enrol(runtime: Runtime, artist: str, seeds: range) -> None:
    runtime.portfolios.create_artist(artist, artist.title())
    await runtime.portfolios.add_works(artist, [(f"{s}.png", png(s)) for s in seeds])


@pytest.mark.anyio
async def test_runtime_answers_with_the_gallery_tables_once_it_has_enough(
    tmp_path: Path, uncounted_model: Model
) -> None:
    model = uncounted_model
    runtime = _runtime(tmp_path, model)
    try:
        card = model.card.calibration
        d = await runtime.scorer.compare(png(1), png(2))
        assert d.calibration.source == "model_card" and d.calibration.genuine_pairs is None
        assert d.calibration.confidence is None and d.expected_fpr_upper is None  # no counts: no bounds invented
        assert "does not record how many pairs" in d.calibration.reason
        assert d.points is not None and d.points.equal_error.threshold == card.recommended_threshold
        await _enrol(runtime, "monet", range(10, 13))
        v = await runtime.scorer.verify(png(1), "monet")
        runtime.bundle.view("default").calibrator.wait(30)
        assert v.calibration.source == "model_card"  # one artist: not enough
        assert runtime.bundle.view("default").calibrator.tables is None
        v = await runtime.scorer.verify(png(1), "monet")
        assert v.calibration.reason.startswith(
            "the gallery has no calibration tables of its own: they need 2 artists with 2 or more works"
        )
        await _enrol(runtime, "manet", range(20, 22))
        tables = runtime.bundle.view("default").calibrator.refresh()
        assert tables is not None and tables.version == runtime.bundle.view("default").gallery.replicas.version
        assert (tables.genuine_pairs, tables.impostor_pairs) == (3 + 1, 3 * 2)
        assert (tables.genuine_trials, tables.impostor_trials) == (5, 5)

        d = await runtime.scorer.compare(png(1), png(2))
        assert d.calibration.source == "gallery"
        assert (d.calibration.genuine_pairs, d.calibration.impostor_pairs) == (4, 6)
        assert d.calibration.confidence == 0.95
        assert d.calibration.reason == (
            "the gallery's own 4 same-artist / 6 different-artist pairs give confidence bounds; "
            "the model card's table does not record how many pairs it rests on"
        )
        threshold, rule = equal_error_point(tables.pair, "this gallery's own pairs")
        assert d.points is not None and d.points.strict is None  # 6 pairs cannot show 1 %: never consistent
        assert d.threshold is None and not d.match and d.verdict != "consistent"
        low = d.points.equal_error
        assert (low.threshold, low.rule) == (threshold, rule)
        assert (low.fpr, low.fnr) == rates_at(tables.pair, low.threshold)
        assert (low.fpr_upper, low.fnr_upper) == (rate_upper(low.fpr, 6), rate_upper(low.fnr, 4))
        fixed = await runtime.scorer.compare(png(1), png(2), Strictness(threshold=0.5))
        assert fixed.calibration.source == "gallery"
        assert (fixed.expected_fpr, fixed.expected_fnr) == rates_at(tables.pair, 0.5)

        v = await runtime.scorer.verify(png(11), "monet")
        assert v.calibration.source == "gallery"
        assert (v.calibration.genuine_pairs, v.calibration.impostor_pairs) == (5, 5)
        threshold, _ = equal_error_point(tables.portfolio, "this gallery's leave-one-out portfolios")
        assert v.points is not None and v.points.equal_error.threshold == threshold
        assert v.threshold is None and not v.match  # 5 trials show no strict point
        low = v.points.equal_error
        assert (low.fpr, low.fnr) == rates_at(tables.portfolio, low.threshold)
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_runtime_rebuilds_in_the_background_after_a_write(tmp_path: Path, uncounted_model: Model) -> None:
    model = uncounted_model
    runtime = _runtime(tmp_path, model)
    try:
        await _enrol(runtime, "monet", range(10, 12))
        await _enrol(runtime, "manet", range(20, 22))
        await runtime.scorer.compare(png(1), png(2))  # sees a new gallery version: starts a rebuild, does not wait
        runtime.bundle.view("default").calibrator.wait(30)
        first = runtime.bundle.view("default").calibrator.tables
        assert first is not None and first.version == runtime.bundle.view("default").gallery.replicas.version
        assert (first.genuine_pairs, first.impostor_pairs) == (2, 4)
        d = await runtime.scorer.compare(png(1), png(2))
        assert d.calibration.source == "gallery" and d.calibration.genuine_pairs == 2
        # another write moves the version; the next request asks for newer tables
        await runtime.portfolios.add_works("manet", [("22.png", png(22))])
        stale = await runtime.scorer.compare(png(1), png(2))
        runtime.bundle.view("default").calibrator.wait(30)
        assert stale.calibration.source == "gallery"
        second = runtime.bundle.view("default").calibrator.tables
        assert second is not None and second.version > first.version
        assert (second.genuine_pairs, second.impostor_pairs) == (1 + 3, 2 * 3)
        d = await runtime.scorer.compare(png(1), png(2))
        assert (d.calibration.genuine_pairs, d.calibration.impostor_pairs) == (4, 6)
        # deleting an artist leaves one: back to the card's tables
        runtime.portfolios.delete_artist("monet")
        await runtime.scorer.compare(png(1), png(2))
        runtime.bundle.view("default").calibrator.wait(30)
        d = await runtime.scorer.compare(png(1), png(2))
        assert d.calibration.source == "model_card"
        assert d.points is not None and d.points.equal_error.threshold == model.card.calibration.recommended_threshold
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_runtime_with_gallery_calibration_off_keeps_the_card(tmp_path: Path, uncounted_model: Model) -> None:
    model = uncounted_model
    runtime = _runtime(tmp_path, model, gallery_calibration=False)
    try:
        await _enrol(runtime, "monet", range(10, 12))
        await _enrol(runtime, "manet", range(20, 22))
        d = await runtime.scorer.compare(png(1), png(2))
        v = await runtime.scorer.verify(png(10), "monet")
        runtime.bundle.view("default").calibrator.wait(30)
        d2 = await runtime.scorer.compare(png(1), png(2))
        assert {d.calibration.source, v.calibration.source, d2.calibration.source} == {"model_card"}
        assert "gallery calibration is off" in d2.calibration.reason
        assert runtime.bundle.view("default").calibrator.tables is None
        card = model.card.calibration
        assert d2.points is not None and d2.points.equal_error.threshold == card.recommended_threshold
        assert d2.threshold is not None and (d2.expected_fpr, d2.expected_fnr) == rates_at(card.pair, d2.threshold)
    finally:
        runtime.close()


# ---- HTTP ---------------------------------------------------------------------------------------------------
def test_compare_and_verify_replies_name_their_calibration(uncounted_model_dir: Path, tmp_path: Path) -> None:
    with running(uncounted_model_dir, tmp_path / "data", gallery_calibration_min_artists=2) as client:
        key = {"X-API-Key": new_key(client, "dealer", "verify")}
        r = client.post("/v1/compare", files=pair(1, 2), headers=key)
        assert r.status_code == 200, r.text
        body = r.json()
        cal = body["calibration"]
        assert {k: v for k, v in cal.items() if k != "reason"} == {
            "source": "model_card",
            "genuine_pairs": None,
            "impostor_pairs": None,
            "confidence": None,
            "model": body["model"],
        }
        # why not the gallery, why no bounds
        assert cal["reason"].startswith("the gallery has no calibration tables of its own")
        assert cal["reason"].endswith(
            "the model card's table does not record how many pairs it rests on: no confidence bounds"
        )
        assert body["expected_fpr_upper"] is None and body["expected_fnr_upper"] is None
        enrol(client, "monet", [10, 11, 12])
        enrol(client, "manet", [20, 21])
        client.post("/v1/compare", files=pair(1, 2), headers=key)  # asks for the gallery's tables
        client.app.state.runtime.bundle.view("default").calibrator.wait(30)
        body = client.post("/v1/compare", files=pair(1, 2), headers=key).json()
        cal = body["calibration"]
        assert (cal["source"], cal["genuine_pairs"], cal["impostor_pairs"], cal["confidence"]) == (
            "gallery",
            4,
            6,
            0.95,
        )
        # 6 different-artist pairs cannot show 1 %: no strict point, and no match; the equal-error point's bound
        assert body["threshold"] is None and body["match"] is False and body["verdict"] != "consistent"
        low = body["points"]["equal_error"]
        assert low["expected_fpr_upper"] == rate_upper(low["expected_fpr"], 6)
        r = client.post("/v1/verify", files=one(11), data={"artist_id": "monet"}, headers=key)
        assert r.status_code == 200, r.text
        cal = r.json()["calibration"]
        assert (cal["source"], cal["genuine_pairs"], cal["impostor_pairs"]) == ("gallery", 5, 5)
        assert cal["reason"].startswith("the gallery's own 5 same-artist / 5 different-artist trials")


# ---- which tables: the gallery's only when at least as certain --------------------------------------------------
ROWS = threshold_table(np.array([True, False]), np.array([0.9, 0.1]))


def test_choose_prefers_the_gallery_only_when_at_least_as_certain() -> None:
    card = Table(ROWS, 57, 6025)
    more = Table(ROWS, 60, 6025)
    table, used = choose(card, more)
    assert table is more and used.source == "gallery" and used.confidence == 0.95
    assert used.reason == (
        "the gallery's own 60 same-artist / 6025 different-artist pairs are at least as many as the model card's "
        "57 same-artist / 6025 different-artist pairs"
    )
    lopsided = Table(ROWS, 412, 6000)  # more same-artist pairs, fewer different-artist ones: not as certain
    table, used = choose(card, lopsided)
    assert table is card and used.source == "model_card"
    assert (used.genuine_pairs, used.impostor_pairs, used.confidence) == (57, 6025, 0.95)
    assert used.reason.startswith(
        "the gallery's own 412 same-artist / 6000 different-artist pairs are fewer than the model card's "
        "57 same-artist / 6025 different-artist pairs"
    )
    # a card without counts cannot be compared: the gallery's tables, which can say how sure they are
    table, used = choose(Table(ROWS), lopsided)
    assert table is lopsided and used.source == "gallery"
    # no gallery tables at all: the card's, and why
    table, used = choose(card, None, "gallery calibration is off")
    assert table is card and used.reason == (
        "gallery calibration is off; the model card's 57 same-artist / 6025 different-artist pairs"
    )


# 14 works of 5 artists: 14 same-artist / 77 different-artist pairs, 14 / 56 leave-one-out verify trials
SMALL_GALLERY = {
    "amber": [30, 31, 32, 33],
    "birch": [40, 41, 42],
    "cedar": [50, 51, 52],
    "dune": [60, 61],
    "elm": [70, 71],
}


def _clopper_pearson(rate: float, n: int) -> float:
    """The 95 % one-sided upper bound of k = rate·n of n, straight from its Beta form (k rounded: counts)."""
    k = round(rate * n)
    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def test_small_gallery_cannot_promise_what_its_pairs_cannot_show(uncounted_model_dir: Path, tmp_path: Path) -> None:
    """Issue 15: a gallery with 14 genuine / 56 impostor trials answered max_fpr=0.001 with expected_fpr 0.0."""
    with running(uncounted_model_dir, tmp_path / "data", gallery_calibration_min_artists=5) as client:
        key = {"X-API-Key": new_key(client, "desk", "verify")}
        for artist, seeds in SMALL_GALLERY.items():
            enrol(client, artist, seeds)
        client.post("/v1/compare", files=pair(1, 2), headers=key)  # asks for the gallery's tables
        client.app.state.runtime.bundle.view("default").calibrator.wait(30)
        tables = client.app.state.runtime.bundle.view("default").calibrator.tables
        assert (tables.genuine_pairs, tables.impostor_pairs, tables.genuine_trials, tables.impostor_trials) == (
            14,
            77,
            14,
            56,
        )

        r = client.post("/v1/verify", files=one(34), data={"artist_id": "amber", "max_fpr": "0.001"}, headers=key)
        assert r.status_code == 422 and error_code(r) == "operating_point_unreachable", r.text
        assert (
            "with 56 different-artist trials the lowest false-positive rate shown at 95 % confidence is 0.052"
            in r.json()["error"]["message"]
        )
        r = client.post("/v1/compare", files=pair(1, 2), data={"max_fpr": "0.001"}, headers=key)
        assert r.status_code == 422 and error_code(r) == "operating_point_unreachable", r.text
        assert "with 77 different-artist pairs the lowest false-positive rate shown" in r.json()["error"]["message"]

        r = client.post("/v1/verify", files=one(34), data={"artist_id": "amber", "max_fpr": "0.1"}, headers=key)
        assert r.status_code == 200, r.text
        v = r.json()
        assert (v["calibration"]["source"], v["calibration"]["genuine_pairs"], v["calibration"]["impostor_pairs"]) == (
            "gallery",
            14,
            56,
        )
        assert v["rule"] == "max_fpr<=0.1"
        assert v["expected_fpr_upper"] >= _clopper_pearson(v["expected_fpr"], 56) - 1e-9
        assert 1 - 0.05 ** (1 / 56) <= v["expected_fpr_upper"] <= 0.1  # never below what 56 trials can show
        assert v["expected_fnr_upper"] >= _clopper_pearson(v["expected_fnr"], 14) - 1e-9
        d = client.post("/v1/compare", files=pair(1, 2), data={"max_fpr": "0.1"}, headers=key).json()
        assert _clopper_pearson(d["expected_fpr"], 77) - 1e-9 <= d["expected_fpr_upper"] <= 0.1


@pytest.mark.anyio
async def test_a_gallery_less_certain_than_the_card_declines_and_says_so(tmp_path: Path, counted_model: Model) -> None:
    runtime = _runtime(tmp_path, counted_model, gallery_calibration_min_artists=5)
    try:
        for artist, seeds in SMALL_GALLERY.items():
            await _enrol(runtime, artist, range(seeds[0], seeds[-1] + 1))
        assert runtime.bundle.view("default").calibrator.refresh() is not None
        d = await runtime.scorer.compare(png(1), png(2), Strictness(max_fpr=0.05))
        assert d.calibration.source == "model_card"
        assert (d.calibration.genuine_pairs, d.calibration.impostor_pairs, d.calibration.confidence) == (57, 6025, 0.95)
        assert d.calibration.reason.startswith(
            "the gallery's own 14 same-artist / 77 different-artist pairs are fewer than the model card's "
            "57 same-artist / 6025 different-artist pairs"
        )
        assert d.expected_fpr_upper == rate_upper(d.expected_fpr, 6025) and d.expected_fpr_upper <= 0.05
        v = await runtime.scorer.verify(png(34), "amber")
        assert v.calibration.source == "model_card" and v.calibration.impostor_pairs == 3682
        assert "the gallery's own 14 same-artist / 56 different-artist trials are fewer" in v.calibration.reason
        assert v.expected_fnr_upper == rate_upper(v.expected_fnr, 64)
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_a_gallery_at_least_as_certain_as_the_card_takes_over(model_dir: Path, tmp_path: Path) -> None:
    from tests.service.conftest import recounted

    thin = Model.load(recounted(model_dir, tmp_path / "thin", (10, 50), (10, 40)), "cpu")
    runtime = _runtime(tmp_path, thin, gallery_calibration_min_artists=5)
    try:
        for artist, seeds in SMALL_GALLERY.items():
            await _enrol(runtime, artist, range(seeds[0], seeds[-1] + 1))
        runtime.bundle.view("default").calibrator.refresh()
        d = await runtime.scorer.compare(png(1), png(2))
        assert (d.calibration.source, d.calibration.genuine_pairs, d.calibration.impostor_pairs) == ("gallery", 14, 77)
        assert "are at least as many as the model card's 10 same-artist / 50 different-artist pairs" in (
            d.calibration.reason
        )
        v = await runtime.scorer.verify(png(34), "amber")
        assert (v.calibration.source, v.calibration.genuine_pairs, v.calibration.impostor_pairs) == ("gallery", 14, 56)
        with pytest.raises(ServiceError) as e:
            await runtime.scorer.verify(png(34), "amber", Strictness(max_fpr=0.001))
        assert e.value.code == "operating_point_unreachable"
    finally:
        runtime.close()
