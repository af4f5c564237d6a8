"""Evidence maps (service/serving/evidence.py through the runtime), reference-work thumbnails and the page's routes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from service.api.errors import status_of
from service.config import Settings
from service.errors import ServiceError
from service.serving.evidence import check_grid, region_boxes
from service.serving.model import Model
from service.serving.runtime import Runtime
from tests.service.apitools import ADMIN, enrol, new_key, running
from tests.service.conftest import encode, painting, png

pytestmark = pytest.mark.anyio


@pytest.fixture
def batches() -> list[int]:
    return []


@pytest.fixture
def runtime(tmp_path: Path, model: Model, batches: list[int]):  # type: ignore[no-untyped-def]
    e = Runtime.build(
        model,
        Settings(data_dir=tmp_path / "data", gpu_index=False, batch_max_size=16, batch_max_wait_ms=20),
        on_batch=lambda size, _seconds: batches.append(size),
    )
    yield e
    e.close()


def test_region_boxes_tile_the_image_exactly():
    for w, h, n in [(48, 40, 2), (101, 37, 3), (16, 16, 4), (640, 480, 4)]:
        boxes = region_boxes(w, h, n)
        assert len(boxes) == n * n
        covered = [[0] * w for _ in range(h)]
        for left, top, right, bottom in boxes:
            assert 0 <= left < right <= w and 0 <= top < bottom <= h
            for y in range(top, bottom):
                for x in range(left, right):
                    covered[y][x] += 1
        assert all(c == 1 for row in covered for c in row), (w, h, n)
    assert region_boxes(100, 50, 2)[1] == (50, 0, 100, 25)  # row-major


@pytest.mark.parametrize("bad", [0, 1, 5, 100, -3, True, 2.5, "3", None])
def test_grid_sizes_outside_2_to_4_are_refused(bad: object):
    with pytest.raises(ServiceError) as info:
        check_grid(bad)
    assert (status_of(info.value), info.value.code) == (422, "invalid_evidence")


def _crop_png(data: bytes, box: tuple[int, int, int, int]) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        from PIL import ImageOps

        return encode(ImageOps.exif_transpose(im).convert("RGB").crop(box), "PNG")


def _rotated_jpeg(seed: int) -> bytes:
    """A 60×40 picture stored with EXIF orientation 6 (display rotated 90°): decoded it is 40 wide, 60 high."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(painting(seed, (60, 40)), "JPEG", quality=95, exif=exif)


async def test_verify_evidence_scores_each_region_as_a_whole_upload(runtime: Runtime, batches: list[int]):
    runtime.portfolios.create_artist("ev", "Evidence")
    await runtime.portfolios.add_works("ev", [(f"{s}.png", png(s)) for s in (11, 12, 13)])
    query = _rotated_jpeg(21)
    plain = await runtime.scorer.verify(query, "ev")
    assert plain.evidence is None
    batches.clear()
    v = await runtime.scorer.verify(query, "ev", evidence=2)
    assert v.score == pytest.approx(plain.score, abs=1e-6) and v.threshold == plain.threshold
    m = v.evidence
    assert m is not None and m.grid == 2 and m.target == "portfolio" and m.threshold == v.threshold
    assert (m.width, m.height) == (40, 60)  # boxes are in the orientation-corrected image
    assert [(r.row, r.col) for r in m.regions] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # the four regions went to the backbone together, as one batch of the micro-batcher
    assert batches[-1] == 4, batches
    for region in m.regions:
        alone = await runtime.scorer.verify(_crop_png(query, region.box), "ev")
        assert region.score == pytest.approx(alone.score, abs=1e-4), region
        assert region.match == (region.score >= v.threshold)


async def test_compare_evidence_maps_image_a_against_image_b(runtime: Runtime):
    a, b = png(31, (64, 48)), png(32)
    d = await runtime.scorer.compare(a, b, evidence=3)
    m = d.evidence
    assert m is not None and m.grid == 3 and len(m.regions) == 9 and m.target == "image_b"
    assert (m.width, m.height) == (64, 48)
    for region in m.regions[:3]:
        alone = await runtime.scorer.compare(_crop_png(a, region.box), b)
        assert region.score == pytest.approx(alone.score, abs=1e-4)
    # the map describes image_a: swapping the images keeps the score but maps the other one
    swapped = await runtime.scorer.compare(b, a, evidence=2)
    assert swapped.score == d.score and swapped.evidence is not None and swapped.evidence.width == 48


async def test_evidence_of_a_reduced_scan_is_in_the_uploads_own_pixels(tmp_path: Path, model: Model):
    """A scan reduced while decoding (here 128×96 over a budget of 4,000 px: decoded at 1/4) is mapped on the grid
    of the upload's own pixels, so the boxes can be drawn on the file the caller holds."""
    runtime = Runtime.build(model, Settings(data_dir=tmp_path / "data", gpu_index=False, decode_pixels=4_000))
    try:
        d = await runtime.scorer.compare(png(33, (128, 96)), png(34), evidence=2)
    finally:
        runtime.close()
    m = d.evidence
    assert m is not None and (m.width, m.height) == (128, 96)
    assert [r.box for r in m.regions] == region_boxes(128, 96, 2)


async def test_invalid_evidence_is_refused_before_any_model_work(runtime: Runtime, batches: list[int]):
    with pytest.raises(ServiceError) as info:
        await runtime.scorer.compare(png(1), png(2), evidence=9)
    assert info.value.code == "invalid_evidence" and batches == []


async def test_thumbnails_are_bounded_oriented_and_scoped_to_the_artist(runtime: Runtime):
    runtime.portfolios.create_artist("th", "Thumbs")
    runtime.portfolios.create_artist("other", "Other")
    big = encode(painting(5, (900, 300)), "PNG")
    (w_big, w_rot) = await runtime.portfolios.add_works("th", [("big.png", big), ("rot.jpg", _rotated_jpeg(6))])
    t = await runtime.portfolios.work_image("th", w_big.id, max_side=128)
    assert t.media_type == "image/jpeg" and (t.width, t.height) == (128, 43)
    with Image.open(io.BytesIO(t.data)) as im:
        assert im.format == "JPEG" and im.size == (128, 43)
    t = await runtime.portfolios.work_image("th", w_rot.id, max_side=512, fmt="png")  # never scaled up; EXIF applied
    with Image.open(io.BytesIO(t.data)) as im:
        assert im.format == "PNG" and im.size == (40, 60)
    for args, code in [
        (("other", w_big.id), "unknown_work"),  # a work is only reachable through its own artist
        (("nobody", w_big.id), "unknown_artist"),
        (("th", "no-such-work"), "unknown_work"),
    ]:
        with pytest.raises(ServiceError) as info:
            await runtime.portfolios.work_image(*args)
        assert (status_of(info.value), info.value.code) == (404, code)
    for side in (0, 15, 513, 10_000):
        with pytest.raises(ServiceError) as info:
            await runtime.portfolios.work_image("th", w_big.id, max_side=side)
        assert (status_of(info.value), info.value.code) == (422, "invalid_max_side")


def test_http_evidence_thumbnails_and_page(model_dir: Path, tmp_path: Path):
    with running(model_dir, tmp_path / "data") as client:
        works = enrol(client, "vermeer", [1, 2, 3])
        verify_key = {"X-API-Key": new_key(client, "desk", "verify")}
        q = {"image": ("q.png", png(4, (60, 60)), "image/png")}
        r = client.post("/v1/verify", files=q, data={"artist_id": "vermeer"}, headers=verify_key)
        assert r.status_code == 200 and "evidence" not in r.json()  # unchanged unless asked for
        r = client.post("/v1/verify", files=q, data={"artist_id": "vermeer", "evidence": "3"}, headers=verify_key)
        assert r.status_code == 200, r.text
        ev = r.json()["evidence"]
        assert ev["grid"] == 3 and len(ev["regions"]) == 9 and ev["width"] == 60 and ev["target"] == "portfolio"
        assert ev["regions"][4]["box"] == [20, 20, 40, 40]
        for bad in ("1", "5", "abc", "2.5"):
            r = client.post("/v1/verify", files=q, data={"artist_id": "vermeer", "evidence": bad}, headers=ADMIN)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_evidence", (bad, r.text)
        pair = {"image_a": ("a.png", png(5), "image/png"), "image_b": ("b.png", png(6), "image/png")}
        r = client.post("/v1/compare", files=pair, data={"evidence": "2", "max_fpr": "0.05"}, headers=verify_key)
        assert r.status_code == 200 and len(r.json()["evidence"]["regions"]) == 4

        url = f"/v1/artists/vermeer/works/{works[0]['id']}/image"
        r = client.get(url + "?max_side=32", headers=verify_key)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(r.content)) as im:
            assert max(im.size) == 32
        r = client.get(url + "?format=png", headers=verify_key)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        for query, code in [("?max_side=1000", "invalid_max_side"), ("?format=gif", "invalid_request")]:
            r = client.get(url + query, headers=verify_key)
            assert r.status_code == 422 and r.json()["error"]["code"] == code
        assert client.get(url).status_code == 401

        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for asset in ("app.js", "style.css"):
            assert client.get(f"/web/{asset}").status_code == 200
        assert "sessionStorage" in client.get("/web/app.js").text
        r = client.get("/web/..%2Fapi%2Fweb.py")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
