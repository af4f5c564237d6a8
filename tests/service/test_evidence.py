"""Evidence maps (service/serving/evidence.py through the runtime), reference-work thumbnails and the page's routes.

Maps pooled from crops (`method` "crops") run on `grid_model`, a 3×3-crop copy of the shipped model at a working
size of 448 px (bench/modelcopy.py `grid_copy`): a 2×2 map pools several crops per region, a 3×3 map is the crops,
a 4×4 map is finer than its crops and goes through the recipe region by region (`method` "regions"), as every map
of the single-crop `model` does.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.modelcopy import grid_copy, single_crop_copy
from bench.pictures import painting as artwork
from contract.card import load_card
from contract.recipe import crop_boxes, resized
from service.api.errors import status_of
from service.config import Settings
from service.errors import ServiceError
from service.serving.evidence import check_grid, crop_cells, crop_weights, pooled_regions, region_boxes
from service.serving.model import Model
from service.serving.runtime import Runtime
from tests.service.apitools import ADMIN, enrol, new_key, running
from tests.service.conftest import encode, painting, png

pytestmark = pytest.mark.anyio


@pytest.fixture
def batches() -> list[int]:
    return []


def _runtime(model: Model, tmp_path: Path, batches: list[int]) -> Runtime:
    """A runtime around `model` that records the size of every backbone run in `batches`."""
    return Runtime.build(
        model,
        Settings(data_dir=tmp_path / "data", gpu_index=False, batch_max_size=16, batch_max_wait_ms=20),
        on_batch=lambda size, _seconds: batches.append(size),
    )


@pytest.fixture
def runtime(tmp_path: Path, model: Model, batches: list[int]):  # type: ignore[no-untyped-def]
    e = _runtime(model, tmp_path, batches)
    yield e
    e.close()


@pytest.fixture(scope="module")
def grid_model_dir(shipped_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grid_copy(shipped_model_dir, tmp_path_factory.mktemp("shipped-3x3"), (3, 3), 448, "3x3")


@pytest.fixture(scope="module")
def grid_model(grid_model_dir: Path) -> Model:
    return Model.load(grid_model_dir, providers="cpu")


@pytest.fixture
def grid_runtime(tmp_path: Path, grid_model: Model, batches: list[int]):  # type: ignore[no-untyped-def]
    e = _runtime(grid_model, tmp_path, batches)
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


def test_crop_weights_are_the_area_of_each_crops_cell_inside_the_region():
    """By hand: the shipped model's 4×4 crops over a 896×672 working picture, a 3×3 map. Cells: x edges 0, 224,
    448, 672, 896 and y edges 0, 168, 336, 504, 672; regions: x edges 0, 299, 597, 896 and y edges 0, 224, 448, 672."""
    w = crop_weights((896, 672), (4, 4), 3)
    assert w.shape == (9, 16)
    first = np.zeros(16)
    first[[0, 1, 4, 5]] = [224 * 168, 75 * 168, 224 * 56, 75 * 56]  # region (0, 0) = [0, 299) × [0, 224)
    assert w[0].tolist() == first.tolist()
    centre = np.zeros(16)
    centre[[5, 6, 9, 10]] = 149 * 112  # region (1, 1) = [299, 597) × [224, 448): four equal quarters
    assert w[4].tolist() == centre.tolist()
    assert w.sum() == 896 * 672 and w.sum(axis=0).tolist() == [224 * 168] * 16  # every cell shared out whole
    # pooled: each region's vector is the weighted mean of the crop vectors (one-hot crops show the weights)
    vectors = pooled_regions(np.eye(16, dtype=np.float32), (896, 672), (4, 4), 3)
    assert np.allclose(vectors[0], first / first.sum()) and np.allclose(vectors[4], centre / centre.sum())
    # at the crop grid's own size a region is exactly its crop's cell
    assert np.array_equal(crop_weights((896, 672), (4, 4), 4) > 0, np.eye(16, dtype=bool))
    assert crop_weights((500, 300), (2, 3), 2).tolist() == [  # 2 rows × 3 columns of crops, a 2×2 map
        [167 * 150, 83 * 150, 0, 0, 0, 0],
        [0, 83 * 150, 167 * 150, 0, 0, 0],
        [0, 0, 0, 167 * 150, 83 * 150, 0],
        [0, 0, 0, 0, 83 * 150, 167 * 150],
    ]


def _nested(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[0] and b[1] <= a[1] or b[0] <= a[0] and a[1] <= b[1]


def test_each_crop_spans_its_cell_or_lies_inside_it_along_each_side(shipped_model_dir: Path):
    """The claim that lets a cell stand for its crop: along each side, crops that overlap (a picture smaller than
    the crops side by side) span their cells, crops with gaps between them lie inside theirs."""
    p = load_card(shipped_model_dir).backbone.preprocessing
    for grid in [(4, 4), (3, 3), (2, 3), (1, 1), (4, 2)]:
        q = p.model_copy(update={"grid": grid})
        for working in [(896, 672), (672, 672), (1344, 672), (3000, 672), (224, 224), (225, 901), (449, 448)]:
            for box, cell in zip(crop_boxes(working, q), crop_cells(working, grid), strict=True):
                assert _nested((box[0], box[2]), (cell[0], cell[2])), (grid, working, box, cell)
                assert _nested((box[1], box[3]), (cell[1], cell[3])), (grid, working, box, cell)


def test_a_region_that_holds_no_crops_cell_is_refused_not_averaged():
    """The cells tile the working picture, so only a region of no pixels holds none (a working picture narrower than
    n, which contract.recipe.resized never makes): a clear error, not a division by zero."""
    with pytest.raises(ValueError, match="hold no crop's cell"):
        pooled_regions(np.eye(16, dtype=np.float32), (3, 3), (4, 4), 4)
    with pytest.raises(ValueError, match="9 crop vectors"):
        pooled_regions(np.eye(9, dtype=np.float32), (896, 672), (4, 4), 2)


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


async def test_a_single_crop_model_scores_each_region_as_a_whole_upload(runtime: Runtime, batches: list[int]):
    """A recipe coarser than the map (one centre crop) has no crops to pool it from: `regions`."""
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
    assert (m.method, m.crop_grid) == ("regions", (1, 1))
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


@pytest.mark.parametrize(("which", "method"), [("model", "regions"), ("grid_model", "crops")])
async def test_evidence_of_a_reduced_scan_is_in_the_uploads_own_pixels(
    tmp_path: Path, request: pytest.FixtureRequest, which: str, method: str
):
    """A scan reduced while decoding (here 128×96 over a budget of 4,000 px: decoded at 1/4) is mapped on the grid
    of the upload's own pixels, so the boxes can be drawn on the file the caller holds — whether the map is pooled
    from the crops of the reduced picture's working copy or cut from the reduced picture."""
    model = request.getfixturevalue(which)
    runtime = Runtime.build(model, Settings(data_dir=tmp_path / "data", gpu_index=False, decode_pixels=4_000))
    try:
        d = await runtime.scorer.compare(png(33, (128, 96)), png(34), evidence=2)
    finally:
        runtime.close()
    m = d.evidence
    assert m is not None and (m.width, m.height) == (128, 96) and m.method == method
    assert [r.box for r in m.regions] == region_boxes(128, 96, 2)


def _png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


async def test_a_map_the_size_of_the_crop_grid_is_each_crop_scored_alone(
    grid_runtime: Runtime, grid_model: Model, tmp_path: Path
):
    """3×3 map, 3×3 crops: region (i, j) is crop (i, j) of the working picture, embedded on its own (a single-crop
    model of the same files takes a 224-px picture as it is) and scored against image_b like a whole picture."""
    a, b = artwork(1, 0, (320, 240)), artwork(2, 0, (200, 150))
    d = await grid_runtime.scorer.compare(_png(a), _png(b), evidence=3)
    m = d.evidence
    assert m is not None and (m.method, m.crop_grid, m.target) == ("crops", (3, 3), "image_b")
    p = grid_model.card.backbone.preprocessing
    working = resized(a, p)
    alone = Model.load(single_crop_copy(grid_model.model_dir, tmp_path / "alone"), providers="cpu")
    crops = alone.embed_pictures([alone.model_inputs(working.crop(box)) for box in crop_boxes(working.size, p)])
    vb = grid_model.reference_vectors(grid_model.embed_pictures([grid_model.model_inputs(b)]))
    expected = grid_model.symmetric_scores(grid_model.reference_vectors(crops), np.repeat(vb, 9, axis=0))
    assert [(r.row, r.col) for r in m.regions] == [(i, j) for i in range(3) for j in range(3)]
    assert [r.score for r in m.regions] == pytest.approx(expected.tolist(), abs=1e-4)
    assert np.ptp(expected) > 0.01  # the crops differ, so the order above is checked
    assert [r.match for r in m.regions] == [s >= m.threshold for s in expected]


async def test_half_a_portfolio_work_and_half_a_stranger_shows_in_the_map(grid_runtime: Runtime):
    """The query's left half is an enrolled work's, its right half another artist's: pooled at 2×2 and read
    crop by crop at 3×3, the left column matches the portfolio better than the right."""
    size = (320, 240)
    works = [artwork(1, i, size) for i in range(3)]
    grid_runtime.portfolios.create_artist("half", "Half")
    await grid_runtime.portfolios.add_works("half", [(f"{i}.png", _png(w)) for i, w in enumerate(works)])
    stranger = artwork(2, 0, size)
    alone = await grid_runtime.scorer.verify(_png(stranger), "half")
    assert not alone.match  # the other artist's picture, whole, does not match the portfolio
    query = stranger.copy()
    query.paste(works[0].crop((0, 0, size[0] // 2, size[1])), (0, 0))
    for n in (2, 3):
        v = await grid_runtime.scorer.verify(_png(query), "half", evidence=n)
        m = v.evidence
        assert m is not None and m.method == "crops"
        left = [r for r in m.regions if r.col == 0]
        right = [r for r in m.regions if r.col == n - 1]
        assert min(r.score for r in left) > max(r.score for r in right) + 0.05, (n, left, right)
        assert all(r.match for r in left) and not any(r.match for r in right), (n, m.threshold, left, right)


async def test_the_backbone_runs_once_per_query_with_evidence(
    grid_runtime: Runtime, grid_model: Model, batches: list[int], monkeypatch: pytest.MonkeyPatch
):
    """A map pooled from crops adds no backbone work: the query's 9 crops run once, as in a plain verify; only a
    map finer than the crops (4×4 here) sends its regions through the recipe."""
    grid_runtime.portfolios.create_artist("once", "Once")
    await grid_runtime.portfolios.add_works("once", [(f"{i}.png", _png(artwork(3, i))) for i in range(2)])
    pictures: list[int] = []
    crop_vectors = grid_model.crop_vectors

    def counted(inputs, *args, **kwargs):  # type: ignore[no-untyped-def]
        pictures.append(len(inputs))
        return crop_vectors(inputs, *args, **kwargs)

    monkeypatch.setattr(grid_model, "crop_vectors", counted)

    def query(i: int) -> bytes:  # a new picture each time: nothing an embedding cache holds
        return _png(artwork(3, 10 + i, (240, 180)))

    for i, n in enumerate((None, 2, 3)):
        batches.clear()
        pictures.clear()
        v = await grid_runtime.scorer.verify(query(i), "once", evidence=n)
        assert (batches, pictures) == ([9], [1]), n
        assert v.evidence is None if n is None else v.evidence is not None and v.evidence.method == "crops"
    batches.clear()
    pictures.clear()
    d = await grid_runtime.scorer.compare(query(3), _png(artwork(4, 0)), evidence=2)
    assert d.evidence is not None and d.evidence.method == "crops" and (sum(batches), sum(pictures)) == (18, 2)
    batches.clear()
    pictures.clear()
    v = await grid_runtime.scorer.verify(query(4), "once", evidence=4)
    assert v.evidence is not None and v.evidence.method == "regions" and sum(pictures) == 1 + 16
    assert sum(batches) == 9 + 16 * 9


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
        assert (ev["method"], ev["crop_grid"]) == ("regions", [1, 1])  # a single-crop model: regions through the recipe
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
