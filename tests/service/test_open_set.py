"""Issue 17 item 4: identify says, besides its top k, whether the painting belongs to any enrolled artist at all:
the top candidate's score read as a three-way verdict on the gallery's own leave-one-out identify trials (a work
held out against the rest: genuine; its whole artist left out: impostor). Without such trials it cannot tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.card import Aggregation
from service.serving.calibration import CalibrationUsed, build_tables, open_set_trials
from service.serving.scorer import Candidate, _open_set
from tests.service.apitools import ADMIN, enrol, one, running


def clusters(artists: int, works: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(artists, 16))
    v = np.repeat(centres, works, axis=0) + 0.35 * rng.normal(size=(artists * works, 16))
    return np.repeat([f"a{i}" for i in range(artists)], works), (v / np.linalg.norm(v, axis=1, keepdims=True))


def cosine01(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a * b).sum(axis=1) + 1) / 2


def test_trials_hold_out_the_work_then_its_artist() -> None:
    ids, vectors = clusters(6, 3)
    ids = np.concatenate([ids, ["solo"]])
    vectors = np.concatenate([vectors, vectors[:1] * -1])
    y, s = open_set_trials(ids, vectors, cosine01, Aggregation(), np.random.default_rng(0), shortlist=200)
    # 18 works of artists with 3: a genuine and an impostor trial each; the artist with one work: impostor only
    assert (int(y.sum()), int((~y).sum())) == (18, 19)
    assert s[y].min() > np.median(s[~y])  # an artist's own other works are closer than anyone else's


def test_open_set_verdicts_on_a_gallery_large_enough_to_show_one_percent() -> None:
    ids, vectors = clusters(150, 3)
    tables = build_tables(ids, vectors, cosine01, Aggregation(), version=1, min_artists=5)
    assert tables is not None and tables.open_impostor == 400 and tables.open_genuine == 400
    table = tables.open_set_table()
    used = CalibrationUsed.of("gallery", table, "test")
    seen = {}
    for score in (0.0, 0.9, 0.995):
        o = _open_set(table, used, Candidate("a1", "Artist One", score, 3), ())
        assert o.points is not None and o.points.strict is not None  # 400 impostor trials can show 1 %
        seen[score] = o.verdict
        assert o.artist_name == "Artist One" and "enrolled artists" in o.summary
    assert seen == {0.0: "not_consistent", 0.9: "inconclusive", 0.995: "consistent"}


def test_identify_replies_with_the_open_set_decision(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path, gallery_calibration_min_artists=2) as c:
        enrol(c, "monet", [10, 11, 12], name="Claude Monet")
        r = c.post("/v1/identify", files=one(13), headers=ADMIN).json()
        # one artist: the gallery cannot calibrate itself, so it cannot tell
        o = r["open_set"]
        assert o["verdict"] == "inconclusive" and o["points"] is None and o["artist_id"] == "monet"
        assert "cannot be told" in o["summary"] and "they need 2 artists" in o["calibration"]["reason"]
        enrol(c, "manet", [20, 21], name="Édouard Manet")
        c.app.state.runtime.bundle.view("default").calibrator.refresh()
        r = c.post("/v1/identify", files=one(13), headers=ADMIN).json()
        o, cal = r["open_set"], r["open_set"]["calibration"]
        assert (cal["source"], cal["genuine_pairs"], cal["impostor_pairs"]) == ("gallery", 5, 5)
        assert o["score"] == r["candidates"][0]["score"] and o["artist_name"] == r["candidates"][0]["name"]
        strict, low = o["points"]["strict"], o["points"]["equal_error"]
        assert not strict["reachable"] and "with 5 different-artist trials" in strict["why"]  # never consistent
        assert o["verdict"] == ("not_consistent" if o["score"] < low["threshold"] else "inconclusive")
        log = c.get("/v1/audit", params={"route": "identify", "limit": 1}, headers=ADMIN).json()["items"][0]
        assert log["verdict"] == o["verdict"] and log["artist_name"] == o["artist_name"]


@pytest.mark.parametrize("enabled", [False])
def test_without_gallery_calibration_identify_cannot_tell(model_dir: Path, tmp_path: Path, enabled: bool) -> None:
    with running(model_dir, tmp_path, gallery_calibration=enabled) as c:
        enrol(c, "monet", [10, 11])
        o = c.post("/v1/identify", files=one(13), headers=ADMIN).json()["open_set"]
        assert o["verdict"] == "inconclusive" and "gallery calibration is off" in o["summary"]
