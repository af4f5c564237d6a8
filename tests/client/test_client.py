"""brushprint_client (client/) against the real server: `python -m service` as a child process
(bench/server.py), sync and async, every route, typed errors, Retry-After on 429."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from brushprint_client import (
    CONSISTENT,
    INCONCLUSIVE,
    NOT_CONSISTENT,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unauthorized,
    UnknownArtist,
    UnknownWork,
    Unprocessable,
    UnsupportedMedia,
)
from PIL import Image

from bench.pictures import painting_jpeg
from bench.server import Server

ADMIN_KEY = "client-admin-key-0123456789abcdef"
OPERATOR_KEY = "client-operator-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("client-data") / "data"
    env = {"BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0", "BRUSHPRINT_OPERATOR_KEY": OPERATOR_KEY}
    with Server(model_dir, data, ADMIN_KEY, env=env) as s:
        yield s


@pytest.fixture
def bp(server: Server) -> Iterator[Client]:
    with Client(server.base_url, ADMIN_KEY) as c:
        yield c


def test_every_route_through_the_sync_client(bp: Client, server: Server, tmp_path: Path):
    assert bp.health()["status"] == "ok" and bp.ready()["ready"] is True
    artist = bp.create_artist("monet", "Claude Monet", meta={"school": "impressionism"})
    assert (artist.id, artist.name, artist.meta, artist.works) == (
        "monet",
        "Claude Monet",
        {"school": "impressionism"},
        0,
    )
    # images as a path, as bytes and as an open binary file
    path = tmp_path / "w0.jpg"
    path.write_bytes(painting_jpeg(1, 0))
    works = bp.add_works("monet", [path, painting_jpeg(1, 1), io.BytesIO(painting_jpeg(1, 2))])
    assert [w.filename for w in works] == ["w0.jpg", "work-1", "work-2"] and all(w.artist_id == "monet" for w in works)
    assert [w.id for w in bp.list_works("monet")] == [w.id for w in works]
    page = bp.list_artists(limit=10)
    assert page.total == 1 and page.items[0].works == 3 and bp.get_artist("monet").works == 3

    d = bp.compare(painting_jpeg(1, 3), path, max_fpr=0.05, evidence=2)
    raw = httpx.post(
        server.base_url + "/v1/compare",
        files={"image_a": painting_jpeg(1, 3), "image_b": path.read_bytes()},
        data={"max_fpr": "0.05", "evidence": "2"},
        headers=server.headers(),
    ).json()
    assert d.score == raw["score"] and d.threshold == raw["threshold"] and d.match == raw["match"]
    assert d.rule == "max_fpr<=0.05" and d.evidence is not None and len(d.evidence.regions) == 4
    assert d.evidence.regions[3].box == tuple(raw["evidence"]["regions"][3]["box"])
    assert (d.evidence.method, d.evidence.crop_grid) == ("regions", (1, 1))  # the tests' single-crop model

    v = bp.verify(painting_jpeg(1, 4), "monet", evidence=3)
    assert v.portfolio_size == 3 and len(v.top_references) == 3 and v.evidence and v.evidence.grid == 3
    assert {r.work_id for r in v.top_references} == {w.id for w in works}
    plain = bp.verify(painting_jpeg(1, 4), "monet", threshold=0.5)
    assert plain.evidence is None and plain.threshold == 0.5 and plain.score == pytest.approx(v.score)
    assert plain.calibration is not None and plain.calibration["source"] == "model_card"  # one artist: the card's

    ident = bp.identify(painting_jpeg(1, 5), k=3)
    assert [c.artist_id for c in ident.candidates] == ["monet"] and ident.model == d.model

    jpeg = bp.work_image("monet", works[0].id, max_side=64)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.format == "JPEG" and max(im.size) == 64
    assert bp.work_image("monet", works[0].id, format="png").startswith(b"\x89PNG")

    created = bp.create_key("client-desk", "verify")
    assert created.key and created.scope == "verify" and created.active
    assert "client-desk" in [k.name for k in bp.list_keys()]
    with Client(server.base_url, created.key) as desk:
        assert desk.verify(painting_jpeg(1, 6), "monet").portfolio_size == 3
        with pytest.raises(Forbidden) as info:
            desk.list_artists()
        assert info.value.code == "insufficient_scope" and info.value.status == 403
    revoked = bp.revoke_key("client-desk")
    assert revoked.active is False and revoked.revoked_at

    audit = bp.audit(limit=50, route="verify")
    assert audit.total >= 3 and all(e.route == "verify" for e in audit.items)
    assert audit.items[0].artist_id == "monet" and audit.items[0].key_name == "client-desk"

    with tarfile.open(fileobj=io.BytesIO(bp.archive())) as tar:  # the collection's backup archive
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["counts"]["works"] >= 3 and manifest["collection"]["id"] == "default"

    bp.delete_work("monet", works[2].id)
    assert len(bp.list_works("monet")) == 2
    bp.delete_artist("monet")
    with pytest.raises(UnknownArtist):
        bp.get_artist("monet")


def _photo(name: str) -> bytes:
    """A real photograph (scikit-image's test pictures): distinct works to the model, unlike the synthetic ones."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_verdicts_catalogue_duplicates_presets_and_open_set(bp: Client, server: Server):
    raw = httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=60)
    bp.create_artist("vermeer", "Johannes Vermeer")
    works = bp.add_works(
        "vermeer",
        [_photo("astronaut"), _photo("coffee"), _photo("chelsea")],
        [{"title": "The Milkmaid", "date": "c. 1658"}, {}, {"inventory_number": "SK-A-2344"}],
    )
    assert [(w.title, w.date, w.inventory_number) for w in works] == [
        ("The Milkmaid", "c. 1658", None),
        (None, None, None),
        (None, None, "SK-A-2344"),
    ]
    assert [w.title for w in bp.list_works("vermeer")] == ["The Milkmaid", None, None]
    with pytest.raises(ValueError, match="2 catalogue entries for 3 images"):
        bp.add_works("vermeer", [b"a", b"b", b"c"], [{}, {}])
    with pytest.raises(ValueError, match="unknown catalogue field"):
        bp.add_works("vermeer", [b"a"], [{"painter": "x"}])

    # the same picture under another artist: a 409 naming the artist and work, unless intended
    bp.create_artist("copyist", "A Copyist")
    with pytest.raises(Conflict) as info:
        bp.add_works("copyist", [_photo("astronaut")])
    assert info.value.code == "duplicate_work" and "Johannes Vermeer" in info.value.message
    assert len(bp.add_works("copyist", [_photo("astronaut")], allow_duplicate=True)) == 1

    edited = bp.update_work("vermeer", works[0].id, title="Het melkmeisje", date=None)
    assert (edited.title, edited.date, edited.id) == ("Het melkmeisje", None, works[0].id)
    assert bp.update_artist("vermeer", name="Jan Vermeer").name == "Jan Vermeer"

    # the verdict, its points and its words, as the API gives them
    v = bp.verify(_photo("rocket"), "vermeer")
    body = raw.post("/v1/verify", files={"image": _photo("rocket")}, data={"artist_id": "vermeer"}).json()
    assert (v.verdict, v.summary, v.artist_name) == (body["verdict"], body["summary"], "Jan Vermeer")
    assert v.consistent == (v.verdict == CONSISTENT) and v.verdict in (CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT)
    assert v.points is not None and v.points.strict.rule == "max_fpr<=0.01" == v.rule
    assert v.points.equal_error.threshold == body["points"]["equal_error"]["threshold"]
    assert "Jan Vermeer" in v.summary and v.same_work_as == []
    assert {r.title for r in v.top_references} == {"Het melkmeisje", None}
    # a copy of an enrolled work says so, and is judged against the portfolio's other works
    copy = bp.verify(_photo("coffee"), "vermeer")
    assert [(c.work_id, c.identical, c.artist_name) for c in copy.same_work_as] == [(works[1].id, True, "Jan Vermeer")]
    assert copy.portfolio_size == 2

    found = bp.identify(_photo("coins"), k=3)
    assert found.open_set is not None and found.open_set.verdict in (CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT)
    assert found.open_set.summary and found.open_set.artist_id == found.candidates[0].artist_id
    assert [c.work_id for c in bp.identify(_photo("chelsea")).same_work_as] == [works[2].id]

    # presets: the reachable ones are answered at their threshold, the others refused as predicted
    presets = bp.presets("compare")
    assert presets.route == "compare" and presets.reachable and len(presets.reachable) < len(presets.presets)
    for p in presets.presets:
        if p.reachable:
            assert p.point is not None
            d = bp.compare(_photo("rocket"), _photo("coins"), **{p.field: p.value})
            assert d.threshold == p.point.threshold
        else:
            with pytest.raises(Unprocessable) as refused:
                bp.compare(_photo("rocket"), _photo("coins"), **{p.field: p.value})
            assert refused.value.code == "operating_point_unreachable" and refused.value.message == p.why
    assert bp.presets("verify", "vermeer").portfolio_size == 3
    with pytest.raises(Unprocessable) as info:
        bp.compare(_photo("rocket"), _photo("coins"), max_fpr=1)
    assert info.value.code == "invalid_operating_point" and "did you mean max_fpr=0.01" in info.value.message

    entry = bp.audit(limit=1, route="verify").items[0]
    assert (entry.artist_name, entry.verdict, entry.same_work_as) == ("Jan Vermeer", copy.verdict, works[1].id)
    raw.close()
    bp.delete_artist("vermeer")
    bp.delete_artist("copyist")


def test_errors_are_typed_and_carry_the_api_code(bp: Client, server: Server):
    bp.create_artist("errs", "Errors")
    cases = [
        (lambda: bp.verify(painting_jpeg(2, 0), "nobody"), UnknownArtist, 404, "unknown_artist"),
        (lambda: bp.verify(painting_jpeg(2, 0), "errs"), Conflict, 409, "empty_portfolio"),
        (lambda: bp.create_artist("errs", "Again"), Conflict, 409, "artist_exists"),
        (lambda: bp.compare(b"not an image", painting_jpeg(2, 0)), UnsupportedMedia, 415, "unsupported_format"),
        (
            lambda: bp.compare(painting_jpeg(2, 0), painting_jpeg(2, 1), evidence=7),
            Unprocessable,
            422,
            "invalid_evidence",
        ),
        (
            lambda: bp.compare(painting_jpeg(2, 0), painting_jpeg(2, 1), threshold=0.5, max_fpr=0.1),
            BadRequest,
            400,
            "conflicting_strictness",
        ),
        (lambda: bp.work_image("errs", "no-such-work"), UnknownWork, 404, "unknown_work"),
    ]
    for call, cls, status, code in cases:
        with pytest.raises(cls) as info:
            call()
        assert (info.value.status, info.value.code) == (status, code), info.value
        assert info.value.message and info.value.request_id
    with Client(server.base_url, "bp_" + "x" * 43) as stranger, pytest.raises(Unauthorized) as info:
        stranger.list_artists()
    assert info.value.code == "invalid_api_key"
    with pytest.raises(TypeError):
        bp.identify("not/a/real/file.jpg" and 42)  # type: ignore[arg-type]


def test_the_async_client_does_the_same(server: Server):
    async def scenario() -> None:
        async with AsyncClient(server.base_url, ADMIN_KEY) as bp:
            await bp.create_artist("degas", "Edgar Degas")
            works = await bp.add_works("degas", [painting_jpeg(3, i) for i in range(3)])
            results = await asyncio.gather(*(bp.verify(painting_jpeg(3, 10 + i), "degas") for i in range(4)))
            assert all(r.portfolio_size == 3 for r in results)
            d = await bp.compare(painting_jpeg(3, 0), painting_jpeg(3, 1), evidence=2)
            assert d.evidence is not None and d.evidence.target == "image_b"
            assert (await bp.list_artists()).total >= 1
            assert len(await bp.work_image("degas", works[0].id, max_side=32)) > 0
            assert (await bp.archive())[257:262] == b"ustar"  # a tar archive
            with pytest.raises(UnknownArtist):
                await bp.verify(painting_jpeg(3, 0), "nobody")
            await bp.delete_artist("degas")

    asyncio.run(scenario())


def test_collections_through_both_clients(server: Server):
    """The operator's methods: a collection and its first key, a key in it, listing, deletion; the collection's
    key sees its own artists only, and its keys say which collection they act in."""
    with Client(server.base_url, OPERATOR_KEY) as op:
        made = op.create_collection("client-dealer", "Client Dealer", max_works=3)
        assert (made.collection.id, made.collection.max_works, made.key.scope) == ("client-dealer", 3, "admin")
        assert made.key.key.startswith("bp_") and made.key.collection == "client-dealer"
        desk = op.create_collection_key("client-dealer", "desk", "verify")
        assert (op.me().scope, op.me().collection) == ("operator", None)
        with Client(server.base_url, made.key.key) as dealer:
            dealer.create_artist("mine", "Mine")
            assert [a.id for a in dealer.list_artists().items] == ["mine"]
            assert {k.collection for k in dealer.list_keys()} == {"client-dealer"}
            assert (dealer.me().collection, dealer.me().collection_name) == ("client-dealer", "Client Dealer")
            with pytest.raises(Forbidden):
                dealer.list_collections()
        with Client(server.base_url, desk.key) as verifier, pytest.raises(UnknownArtist):
            verifier.verify(painting_jpeg(1, 0), "monet")  # the default collection's artist is not here
        assert op.get_collection("client-dealer").artists == 1
        assert "client-dealer" in {c.id for c in op.list_collections()}

    async def scenario() -> None:
        async with AsyncClient(server.base_url, OPERATOR_KEY) as aop:
            assert (await aop.get_collection("client-dealer")).keys == 2
            assert (await aop.me()).scope == "operator"
            await aop.delete_collection("client-dealer")
            with pytest.raises(NotFound) as e:
                await aop.get_collection("client-dealer")
            assert e.value.code == "unknown_collection"

    asyncio.run(scenario())


def test_retry_after_is_honoured_on_429(model_dir: Path, tmp_path: Path):
    """A real rate limit: one request a second, burst 1. Without retries the second call fails with the API's
    Retry-After; with them it waits that long and succeeds."""
    env = {"BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "60", "BRUSHPRINT_RATE_LIMIT_BURST": "1"}
    with Server(model_dir, tmp_path / "data", ADMIN_KEY, env=env) as server:
        waits: list[float] = []
        with Client(server.base_url, ADMIN_KEY, retry=RetryPolicy(max_retries=0)) as strict:
            strict.list_artists()
            with pytest.raises(RateLimited) as info:
                strict.list_artists()
        assert info.value.status == 429 and info.value.retry_after is not None and info.value.retry_after >= 1

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        with Client(server.base_url, ADMIN_KEY, retry=RetryPolicy(max_retries=3), sleep=sleep) as patient:
            patient.list_artists()
            assert patient.list_artists().total == 0  # rate limited first, then served
        assert waits and all(1 <= w <= 30 for w in waits), waits

        async def async_side() -> list[float]:
            slept: list[float] = []

            async def asleep(seconds: float) -> None:
                slept.append(seconds)
                await asyncio.sleep(seconds)

            async with AsyncClient(server.base_url, ADMIN_KEY, sleep=asleep) as bp:
                await bp.list_artists()
                await bp.list_artists()
            return slept

        assert asyncio.run(async_side())
        # bounded: with a cap of one retry and the bucket drained, the client gives up and says why
        hasty = Client(server.base_url, ADMIN_KEY, retry=RetryPolicy(max_retries=1, max_wait=0.01))
        with hasty, pytest.raises(RateLimited):
            for _ in range(3):
                hasty.list_artists()


def test_retry_policy_waits():
    policy = RetryPolicy(max_retries=2, max_wait=5, backoff=0.25)
    limited = httpx.Response(429, headers={"Retry-After": "3"})
    assert policy.wait(0, limited) == 3 and policy.wait(2, limited) is None
    assert policy.wait(0, httpx.Response(429, headers={"Retry-After": "120"})) == 5  # capped
    assert policy.wait(1, httpx.Response(503)) == 0.5  # no Retry-After: backoff * 2**attempt
    assert policy.wait(0, httpx.Response(500)) is None and policy.wait(0, httpx.Response(404)) is None
