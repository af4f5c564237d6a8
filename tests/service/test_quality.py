"""Quality-aware answers: every upload is measured, the pair's (or query's) quality picks the model card's band and
its rates, a picture or pair below the floor is refused with 422 `image_quality_too_low` (at enrolment too, naming
the file), and a gallery's own tables stand only for pictures of the top band.

The test card's quality model reads the picture's shorter side alone, so the test pictures' sizes set their quality:
48×40 → 0.95, 24×20 → 0.65, 16×16 → 0.55 (below the 0.6 floor)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract import quality
from contract.card import CalibrationRow, QualityBand, QualityModel, load_card, write_card
from contract.decode import ImageError
from contract.operating import operating_point
from service.config import Settings
from service.errors import ServiceError
from service.serving.model import Model
from service.serving.runtime import Runtime
from service.serving.strictness import Strictness
from tests.service.apitools import enrol, error_code, new_key, running
from tests.service.conftest import png

FLOOR = 0.6


def _shifted(rows: list[CalibrationRow], by: float) -> list[CalibrationRow]:
    """The same table with every rate as if the scores had risen by `by` (a poorer photo's impostors score higher)."""
    ts = np.array([r.threshold for r in rows])
    out = []
    for r in rows:
        src = float(np.clip(r.threshold - by, 0, 1))
        k = int(np.searchsorted(ts, src))
        k = min(k, len(rows) - 1)
        out.append(r.model_copy(update={"fpr": rows[k].fpr, "fnr": rows[k].fnr, "fpr_upper": None, "fnr_upper": None}))
    return out


@pytest.fixture(scope="module")
def banded_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    card = load_card(model_dir)
    out = tmp_path_factory.mktemp("banded")
    for name in card.onnx_files():
        try:
            os.link(model_dir / name, out / name)
        except OSError:
            shutil.copyfile(model_dir / name, out / name)
    cal = card.calibration
    qmodel = QualityModel(
        features=["shorter_side"], mean=[math.log2(40)], scale=[1.0], coef=[0.3], intercept=0.95, floor=FLOOR,
        target="test: the shorter side alone",
    )  # fmt: skip
    port = cal.portfolio[0].table if cal.portfolio else cal.pair
    top = QualityBand(
        min_quality=0.85, pair=list(cal.pair), genuine_pairs=10, impostor_pairs=50, portfolio=list(port),
        genuine_trials=10, impostor_trials=40, recommended_threshold=cal.recommended_threshold,
        recommended_rule="top band EER",
    )  # fmt: skip
    low = QualityBand(
        min_quality=FLOOR, pair=_shifted(list(cal.pair), 0.15), genuine_pairs=40, impostor_pairs=3000,
        portfolio=_shifted(list(port), 0.15), genuine_trials=40, impostor_trials=2000,
        recommended_threshold=min(1.0, cal.recommended_threshold + 0.1), recommended_rule="low band EER",
    )  # fmt: skip
    banded = cal.model_copy(update={"quality": qmodel, "bands": [top, low]})
    write_card(card.model_copy(update={"calibration": banded, "version": card.version + "-banded"}), out)
    return out


@pytest.fixture(scope="module")
def banded(banded_dir: Path) -> Model:
    return Model.load(banded_dir, providers="cpu")


def good() -> bytes:
    return png(1, (48, 40))


def fair() -> bytes:
    return png(2, (24, 20))


def poor() -> bytes:
    return png(3, (16, 16))


def _runtime(tmp_path: Path, model: Model, **values: Any) -> Runtime:
    values = {"batch_max_wait_ms": 2, "gallery_calibration": False, **values}
    return Runtime.build(model, Settings(data_dir=tmp_path / "data", gpu_index=False, **values))


@pytest.mark.anyio
async def test_quality_picks_the_band_and_its_rates(tmp_path: Path, banded: Model) -> None:
    runtime = _runtime(tmp_path, banded)
    bands = banded.card.calibration.bands
    try:
        d = await runtime.scorer.compare(good(), png(4, (48, 40)))
        assert d.quality is not None
        assert d.quality.score == pytest.approx(0.95 * 0.95, abs=1e-3) and d.quality.band == 0.85
        assert [p.score for p in d.quality.pictures] == [0.95, 0.95]
        assert d.quality.floor == FLOOR
        table, default = quality.band_table(bands[0], "pair")
        assert d.points is not None
        assert (d.points.equal_error.threshold, d.points.equal_error.rule) == (default[0], "top band EER")

        d = await runtime.scorer.compare(good(), fair(), Strictness(max_fpr=0.05))
        assert d.quality is not None and d.quality.band == FLOOR
        assert d.quality.score == pytest.approx(0.95 * 0.65, abs=1e-3)
        low, _ = quality.band_table(bands[1], "pair")
        point = operating_point(low, max_fpr=0.05)
        assert (d.threshold, d.expected_fpr, d.expected_fpr_upper) == (point.threshold, point.fpr, point.fpr_upper)
        assert d.calibration.impostor_pairs == 3000
        # each band's own counts bound its rates: the top band's 50 different-artist pairs cannot show 5 %
        with pytest.raises(ServiceError) as e:
            await runtime.scorer.compare(good(), png(4, (48, 40)), Strictness(max_fpr=0.05))
        assert e.value.code == "operating_point_unreachable" and "with 50 different-artist pairs" in e.value.message
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_below_the_floor_is_refused_plainly(tmp_path: Path, banded: Model) -> None:
    runtime = _runtime(tmp_path, banded)
    try:
        with pytest.raises(ImageError) as e:
            await runtime.scorer.compare(fair(), png(5, (24, 20)))  # each above the floor, the pair (0.42) below
        assert e.value.code == "image_quality_too_low" and "the pair's measured quality is 0.42" in e.value.message
        with pytest.raises(ImageError) as e:
            await runtime.scorer.compare(good(), poor())
        assert e.value.code == "image_quality_too_low"
        assert "16×16 px" in e.value.message and "below 0.60" in e.value.message
        runtime.portfolios.create_artist("ann", "Ann")
        with pytest.raises(ImageError) as e:
            await runtime.portfolios.add_works("ann", [("fine.png", good()), ("tiny.png", poor())])
        assert e.value.code == "image_quality_too_low" and e.value.message.startswith("tiny.png: ")
        assert runtime.portfolios.list_works("ann") == []  # all or nothing
        with pytest.raises(ImageError):
            await runtime.scorer.identify(poor())
    finally:
        runtime.close()


@pytest.mark.anyio
async def test_verify_judges_the_query_by_its_own_quality(tmp_path: Path, banded: Model) -> None:
    runtime = _runtime(tmp_path, banded)
    try:
        runtime.portfolios.create_artist("ann", "Ann")
        await runtime.portfolios.add_works("ann", [(f"{s}.png", png(s, (48, 40))) for s in (10, 11, 12)])
        v = await runtime.scorer.verify(fair(), "ann")
        assert v.quality is not None and v.quality.score == 0.65 and v.quality.band == FLOOR
        assert v.calibration.impostor_pairs == 2000  # the low band's portfolio trials
        with pytest.raises(ImageError):
            await runtime.scorer.verify(poor(), "ann")
    finally:
        runtime.close()


def test_http_answers_carry_quality_and_the_422(banded_dir: Path, tmp_path: Path) -> None:
    with running(banded_dir, tmp_path) as client:
        key = {"X-API-Key": new_key(client, "dealer", "verify")}
        files = {"image_a": ("a.png", good(), "image/png"), "image_b": ("b.png", fair(), "image/png")}
        r = client.post("/v1/compare", files=files, headers=key)
        assert r.status_code == 200, r.text
        q = r.json()["quality"]
        assert (q["band"], q["floor"]) == (FLOOR, FLOOR)
        assert [(p["width"], p["height"], p["score"]) for p in q["pictures"]] == [(48, 40, 0.95), (24, 20, 0.65)]
        files = {"image_a": ("a.png", good(), "image/png"), "image_b": ("b.png", poor(), "image/png")}
        r = client.post("/v1/compare", files=files, headers=key)
        assert r.status_code == 422 and error_code(r) == "image_quality_too_low"
        enrol(client, "bob", [20, 21])
        r = client.post("/v1/verify", files={"image": ("q.png", poor(), "image/png")}, data={"artist_id": "bob"},
                        headers=key)  # fmt: skip
        assert r.status_code == 422 and error_code(r) == "image_quality_too_low"


@pytest.mark.anyio
async def test_gallery_tables_stand_only_for_top_band_pictures(tmp_path: Path, banded: Model) -> None:
    from tests.service.test_calibration import SMALL_GALLERY

    runtime = _runtime(tmp_path, banded, gallery_calibration=True, gallery_calibration_min_artists=5)
    try:
        for artist, seeds in SMALL_GALLERY.items():
            runtime.portfolios.create_artist(artist, artist.title())
            await runtime.portfolios.add_works(artist, [(f"{s}.png", png(s, (48, 40))) for s in seeds])
        runtime.bundle.view("default").calibrator.refresh()
        gallery_table = runtime.bundle.view("default").calibrator.tables
        assert gallery_table is not None
        # good pictures: the gallery's 14 / 77 pairs are at least as many as the top band's 10 / 50, so they answer
        top = await runtime.scorer.compare(good(), png(4, (48, 40)))
        assert (top.calibration.source, top.calibration.impostor_pairs) == ("gallery", 77)
        # a fair picture: the gallery's works do not stand for it, the card's low band does
        low = await runtime.scorer.compare(good(), fair())
        assert low.calibration.source == "model_card"
        assert "below the top band" in low.calibration.reason
    finally:
        runtime.close()


def test_a_scan_reduced_while_decoding_is_measured_at_its_own_size(banded_dir: Path, tmp_path: Path) -> None:
    """Above `decode_pixels` the picture is reduced while decoding; its quality (size, bits per pixel, and the score
    the size sets here) is still the upload's own, as without the reduction."""
    files = {"image_a": ("a.png", good(), "image/png"), "image_b": ("b.png", good(), "image/png")}
    answers = []
    for decode_pixels, data_dir in ((500, tmp_path / "reduced"), (40_000_000, tmp_path / "whole")):
        with running(banded_dir, data_dir, decode_pixels=decode_pixels) as client:
            key = {"X-API-Key": new_key(client, "dealer", "verify")}
            r = client.post("/v1/compare", files=files, headers=key)
            assert r.status_code == 200, r.text
            answers.append(r.json()["quality"]["pictures"][0])
    reduced, whole = answers  # 48×40 over a budget of 500 px: decoded at half size, 24×20 (which would score 0.65)
    assert (reduced["width"], reduced["height"], reduced["score"]) == (48, 40, 0.95)
    assert reduced["bits_per_pixel"] == whole["bits_per_pixel"] and reduced["score"] == whole["score"]
