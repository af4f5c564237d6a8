"""The page at `/` in a real browser: headless Chromium (Debian's package, `make browser-deps`) driven by
Playwright against `python -m service` serving the shipped model (models/default).

One walk through what a dealer does: a wrong key, then an admin key; enrol an artist with three works (progress,
thumbnails); compare two paintings with a strictness preset and an evidence map; verify against the artist (the
decision, the reference thumbnails, the calibration source, the map drawn over the query); an error shown as its
message; the audit log; the page at phone width. Each state is saved as a screenshot: to docs/screenshots/ when
BRUSHPRINT_SCREENSHOTS names that folder (how the README's pictures were made), else to a temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright import sync_api as playwright_sync

from bench.pictures import painting_jpeg
from bench.server import Server

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "default"
ADMIN_KEY = "browser-admin-key-0123456789abcdef"
OPERATOR_KEY = "browser-operator-key-0123456789abcdef"
_LOADED = "[...document.querySelectorAll('%s')].filter(i => i.naturalWidth > 0).length"  # pictures shown
CHROMIUM = os.environ.get("BRUSHPRINT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert (SHIPPED / "model.json").is_file(), "the browser tests use the shipped model models/default"
    data = tmp_path_factory.mktemp("browser-data")
    env = {
        "BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0",
        "BRUSHPRINT_PROVIDERS": "cpu",
        "BRUSHPRINT_OPERATOR_KEY": OPERATOR_KEY,
    }
    with Server(SHIPPED, data / "data", ADMIN_KEY, env=env) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: run `make browser-deps` (apt-get install chromium)"
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("BRUSHPRINT_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _shot(page, shots: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A screenshot, reduced to a small palette PNG (the README shows them; they need not be photographic)."""
    out = shots / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    with Image.open(out) as im:
        im = im.convert("RGB")
        if im.width > 900:
            im = im.resize((900, round(im.height * 900 / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=128).save(out, optimize=True)
    return out


def _photos(tmp: Path, names: list[str], prefix: str = "") -> list[str]:
    """Real photographs (scikit-image's test pictures) as JPEG files named after them: unlike the synthetic
    pictures, which the shipped model reads as one painting photographed again, these are different works."""
    from skimage import data

    paths = []
    for name in names:
        p = tmp / f"{prefix}{name}.jpg"
        Image.fromarray(getattr(data, name)()).convert("RGB").save(p, "JPEG", quality=90)
        paths.append(str(p))
    return paths


def _files(tmp: Path, name: str, artist: int, indices: list[int]) -> list[str]:
    paths = []
    for i in indices:
        p = tmp / f"{name}-{artist}-{i}.jpg"
        p.write_bytes(painting_jpeg(artist, i, (320, 240)))
        paths.append(str(p))
    return paths


class Dialogs:
    """The page's confirm()/prompt() dialogs: each message recorded, each answered as `answers` says (accept unless
    told otherwise; a prompt gets its text)."""

    def __init__(self, page):  # type: ignore[no-untyped-def]
        self.seen: list[str] = []
        self.answers: list[bool | str] = []
        page.on("dialog", self._answer)

    def _answer(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.seen.append(dialog.message)
        answer = self.answers.pop(0) if self.answers else True
        if answer is False:
            dialog.dismiss()
        elif isinstance(answer, str):
            dialog.accept(answer)
        else:
            dialog.accept()


_WATCH_BUSY = """() => {
    window.__busy = [];
    const bar = document.querySelector('#busy');
    new MutationObserver(() => { if (!bar.hidden) window.__busy.push(bar.textContent.trim()); })
        .observe(bar, { attributes: true, attributeFilter: ['hidden'] });
}"""
_SLOW = """(path) => performance.getEntriesByType('resource').filter(e => e.name.includes(path)).map(e => e.duration)"""


def _api(server: Server, method: str, path: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    r = httpx.request(method, server.base_url + path, headers=server.headers(), timeout=60, **kw)
    assert r.status_code < 300, r.text
    return r.json()


def _captions_fit(page, selector: str) -> bool:  # type: ignore[no-untyped-def]
    """Every caption under `selector` stays inside its figure, and no two captions overlap."""
    return bool(
        page.evaluate(
            """(sel) => {
            const figs = [...document.querySelectorAll(sel)];
            const boxes = figs.map(f => f.querySelector('figcaption').getBoundingClientRect());
            for (let i = 0; i < figs.length; i++) {
                const cap = figs[i].querySelector('figcaption'), fig = figs[i].getBoundingClientRect();
                if (cap.scrollWidth > cap.clientWidth + 1) return false;
                if (boxes[i].left < fig.left - 1 || boxes[i].right > fig.right + 1) return false;
                for (let j = 0; j < i; j++) {
                    const a = boxes[i], b = boxes[j];
                    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) return false;
                }
            }
            return figs.length > 0;
        }""",
            selector,
        )
    )


def test_a_dealer_walks_through_the_page(server: Server, browser, shots: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    dialogs = Dialogs(page)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
    page.goto(server.base_url + "/")
    assert "keys create" in page.inner_text("#key-status")  # a first visitor is told where a key comes from
    _shot(page, shots, "01-key")

    # a wrong key is refused with the API's own message
    page.fill("#key-input", "bp_" + "x" * 43)
    page.click("#key-use")
    page.wait_for_selector("#key-status.bad")
    assert "invalid_api_key" in page.inner_text("#key-status")
    assert page.is_hidden("#tabs")

    page.fill("#key-input", ADMIN_KEY)
    page.click("#key-use")
    page.wait_for_selector("#key-status.good")
    assert "Admin key" in page.inner_text("#key-status")
    assert "Collection: Default collection (default)" in page.inner_text("#collection-status")
    assert page.is_hidden("#collections-tab")
    # the key is in this tab's sessionStorage only: not in the URL, no cookie, not left in the input
    assert page.evaluate("sessionStorage.getItem('brushprint.key')") == ADMIN_KEY
    assert ADMIN_KEY not in page.url and context.cookies() == [] and page.input_value("#key-input") == ""
    page.evaluate(_WATCH_BUSY)

    # ---- enrol an artist and three reference works, one with a title and one with a very long file name
    page.click("#admin-tab")
    page.fill("#artist-id", "vermeer")
    page.fill("#artist-name", "Johannes Vermeer")
    page.click("#artist-form button[type=submit]")
    page.wait_for_selector("#artist-detail:not([hidden])")
    files = _photos(tmp_path, ["astronaut", "coffee", "chelsea"])
    long_name = tmp_path / ("the-milkmaid-rijksmuseum-high-resolution-scan-" + "x" * 60 + ".jpg")
    Path(files[2]).rename(long_name)
    files[2] = str(long_name)
    page.set_input_files("#works-files", files)
    page.wait_for_selector("#works-catalogue .catalogue-row")
    page.fill("#works-catalogue .catalogue-row:nth-child(1) .cat-title", "The Milkmaid")
    page.fill("#works-catalogue .catalogue-row:nth-child(1) .cat-date", "c. 1658")
    page.click("#works-upload")
    _wait(page, "() => document.querySelector('#works-status').textContent.includes('3 works enrolled')")
    # the upload was confirmed, naming the artist it goes to
    assert dialogs.seen[-1] == "Enrol 3 works in the portfolio of Johannes Vermeer (vermeer)?"
    assert page.evaluate("document.querySelector('#works-progress').value") == 100
    _wait(page, f"() => {_LOADED % '#works-grid img'} === 3")
    works = _api(server, "GET", "/v1/artists/vermeer/works")["works"]
    assert len(works) == 3 and [(w["title"], w["date"]) for w in works if w["title"]] == [("The Milkmaid", "c. 1658")]
    assert "The Milkmaid" in page.inner_text("#works-grid")  # names, not ids or hashes
    assert _captions_fit(page, "#works-grid figure")  # the long file name wraps inside its picture's width

    # ---- a second artist: files chosen there are cleared when another artist is opened
    page.fill("#artist-id", "renoir")
    page.fill("#artist-name", "Pierre-Auguste Renoir")
    page.click("#artist-form button[type=submit]")
    _wait(page, "() => document.querySelector('#detail-name').textContent === 'Pierre-Auguste Renoir'")
    page.set_input_files("#works-files", _photos(tmp_path, ["rocket", "colorwheel"]))
    page.click("#artists-table button.link >> text=Johannes Vermeer")
    _wait(page, "() => document.querySelector('#detail-name').textContent === 'Johannes Vermeer'")
    assert page.evaluate("document.querySelector('#works-files').files.length") == 0
    assert page.locator("#works-catalogue .catalogue-row").count() == 0
    before = len(dialogs.seen)
    page.click("#works-upload")  # nothing chosen for Vermeer: refused on the page, nothing sent, nothing asked
    page.wait_for_selector("#error:not([hidden])")
    assert "choose reference works for Johannes Vermeer first" in page.inner_text("#error")
    assert len(dialogs.seen) == before and len(_api(server, "GET", "/v1/artists/vermeer/works")["works"]) == 3

    # renoir gets two works (confirmed under his name); deleting one asks, naming the work and the artist
    page.click("#artists-table button.link >> text=Pierre-Auguste Renoir")
    page.set_input_files("#works-files", _photos(tmp_path, ["rocket", "colorwheel"]))
    page.click("#works-upload")
    _wait(page, "() => document.querySelector('#works-status').textContent.includes('2 works enrolled')")
    assert "Pierre-Auguste Renoir (renoir)" in dialogs.seen[-1]
    _wait(page, f"() => {_LOADED % '#works-grid img'} === 2")
    dialogs.answers = [False]
    page.click("#works-grid figure:nth-child(1) button.danger")
    assert dialogs.seen[-1].startswith("Delete “rocket.jpg” from the portfolio of Pierre-Auguste Renoir (renoir)")
    assert len(_api(server, "GET", "/v1/artists/renoir/works")["works"]) == 2  # declined: nothing deleted
    page.click("#works-grid figure:nth-child(1) button.danger")
    _wait(page, f"() => {_LOADED % '#works-grid img'} === 1")
    assert len(_api(server, "GET", "/v1/artists/renoir/works")["works"]) == 1

    # a catalogue entry edited on the page
    page.click("#artists-table button.link >> text=Johannes Vermeer")
    _wait(page, f"() => {_LOADED % '#works-grid img'} === 3")
    page.click("#works-grid figure:nth-child(2) button.secondary")
    page.fill("#work-edit input[name=title]", "Girl Reading a Letter at an Open Window")
    page.fill("#work-edit input[name=inventory_number]", "Gal.-Nr. 1336")
    page.click("#work-edit button[type=submit]")
    _wait(page, "() => document.querySelector('#works-grid').textContent.includes('Girl Reading a Letter')")
    edited = [w for w in _api(server, "GET", "/v1/artists/vermeer/works")["works"] if w["inventory_number"]]
    assert [(w["title"], w["inventory_number"]) for w in edited] == [
        ("Girl Reading a Letter at an Open Window", "Gal.-Nr. 1336")
    ]
    page.click("#audit-load")
    _shot(page, shots, "04-admin")

    # ---- compare: the presets offered are those the calibration reaches; the verdict in words; an evidence map
    page.click("[data-tab=compare]")
    offered = _api(server, "GET", "/v1/strictness", params={"route": "compare"})["presets"]
    reachable = [p for p in offered if p["reachable"]]
    _wait(page, f"() => document.querySelector('#compare-preset').options.length === {len(reachable) + 2}")
    options = page.eval_on_selector_all("#compare-preset option", "os => os.map(o => o.value)")
    assert options == ["default", *(p["id"] for p in reachable), "custom"]
    missing = [p["label"].lower() for p in offered if not p["reachable"]]
    assert all(m in page.inner_text("#compare-presets-note") for m in missing)
    preset = reachable[0]
    a, b = _photos(tmp_path, ["immunohistochemistry", "hubble_deep_field"])
    page.set_input_files("#compare-a", a)
    page.set_input_files("#compare-b", b)
    page.select_option("#compare-preset", preset["id"])
    page.check("#compare-evidence")
    page.select_option("#compare-grid", "4")
    page.click("#compare-go")
    page.wait_for_selector("#compare-result:not([hidden])")
    text = page.inner_text("#compare-result")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        direct = _api(server, "POST", "/v1/compare", files={"image_a": fa, "image_b": fb},
                      data={preset["field"]: str(preset["value"])})  # fmt: skip
    headline = page.inner_text("#compare-result .verdict")
    assert (
        headline == direct["summary"].split(": ")[0]
        and page.locator(f"#compare-result .verdict.{_CLS[direct['verdict']]}").count() == 1
    )
    assert f"score {direct['score']:.3f}" in text and f"threshold {direct['threshold']:.3f}" in text
    assert preset["point"]["rule"] in text
    assert ("At the strictness you chose: a match" in text) == direct["match"]
    assert "Evidence map: " in text and "of 16 regions" in text
    assert not re.search(r"\d\.\d{4,}", text)  # scores to 3 decimals, never 16 digits
    assert _overlay_painted(page, "#tab-compare canvas.overlay")
    # any request over 300 ms showed the progress bar, with what it was doing
    slow = page.evaluate(_SLOW, "/v1/compare")
    assert slow and max(slow) > 300, slow
    assert any(t.startswith("Comparing the two paintings") for t in page.evaluate("window.__busy")), page.evaluate(
        "window.__busy"
    )
    _shot(page, shots, "02-compare")

    # ---- verify against the artist by name: the verdict in words, titled reference thumbnails, an evidence map
    page.click("[data-tab=verify]")
    labels = page.eval_on_selector_all("#verify-artist option", "os => os.map(o => o.textContent)")
    assert labels == ["Johannes Vermeer (3 works)", "Pierre-Auguste Renoir (1 work)"]  # names, not ids
    page.select_option("#verify-artist", label="Johannes Vermeer (3 works)")
    page.set_input_files("#verify-image", _photos(tmp_path, ["brick"]))
    page.select_option("#verify-grid", "3")
    page.click("#verify-go")
    page.wait_for_selector("#verify-result:not([hidden])")
    _wait(page, f"() => {_LOADED % '#verify-result .thumb img'} === 3")
    text = page.inner_text("#verify-result")
    assert "Johannes Vermeer's 3 reference works" in page.inner_text("#verify-result .verdict-block")
    assert "vermeer" not in page.inner_text("#verify-result .verdict")  # the name, not the id
    assert "Judged against 3 reference works of Johannes Vermeer" in text and "Calibration: model card" in text
    assert "of 9 regions" in text and "not proof" in text and "Read at two points" in text
    assert "The Milkmaid" in text and "Girl Reading a Letter" in text  # references by title
    assert len(re.findall(r"score \d\.\d{3}\b", text)) >= 4 and not re.search(r"\d\.\d{4,}", text)
    assert _captions_fit(page, "#verify-result .thumb")
    assert _overlay_painted(page, "#tab-verify canvas.overlay")
    _shot(page, shots, "03-verify")
    # another artist chosen: the answer about the first is not left standing
    page.select_option("#verify-artist", "renoir")
    assert page.is_hidden("#verify-result")

    # ---- identify: which enrolled artist, if any, in words; then verify against a candidate
    page.click("[data-tab=identify]")
    query = _photos(tmp_path, ["coins"])[0]
    page.set_input_files("#identify-image", query)
    page.click("#identify-go")
    page.wait_for_selector("#identify-result:not([hidden])")
    with open(query, "rb") as f:
        found = _api(server, "POST", "/v1/identify", files={"image": f}, data={"k": "5"})
    text = page.inner_text("#identify-result")
    assert page.inner_text("#identify-result .verdict") == found["open_set"]["summary"].split(": ")[0]
    rows = page.eval_on_selector_all(
        "#identify-result table.candidates tbody tr",
        "rs => rs.map(r => r.cells[1].textContent + ' ' + r.cells[2].textContent)",
    )
    assert rows == [f"{c['name']} {c['score']:.3f}" for c in found["candidates"]]
    assert "Johannes Vermeer" in text and not re.search(r"\d\.\d{4,}", text)
    _shot(page, shots, "07-identify")
    page.click("#identify-result table.candidates tbody tr:nth-child(1) button")
    page.wait_for_selector("#tab-verify:not([hidden])")
    assert page.input_value("#verify-artist") == found["candidates"][0]["artist_id"]
    assert page.evaluate("document.querySelector('#verify-image').files.length") == 1

    # ---- an error the API gives is shown as its message
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a picture at all")
    page.set_input_files("#verify-image", str(bad))
    page.click("#verify-go")
    page.wait_for_selector("#error:not([hidden])")
    assert "[unsupported_format]" in page.inner_text("#error")
    assert page.is_hidden("#verify-result")  # the previous painting's verdict is not left standing
    _shot(page, shots, "05-error")

    # ---- the audit log: names and verdicts in words (no hashes), paged, and exported whole as CSV
    page.click("#admin-tab")
    page.click("#audit-load")
    page.wait_for_selector("#audit-table:not([hidden])")
    _wait(page, "() => document.querySelector('#audit-range').textContent.startsWith('decisions 1–')")
    total = _api(server, "GET", "/v1/audit", params={"limit": 1})["total"]
    rows = page.inner_text("#audit-table tbody")
    assert "compare" in rows and "verify" in rows and "identify" in rows and "Johannes Vermeer" in rows
    assert re.search(r"\b(consistent|inconclusive|not consistent)\b", rows)
    assert not re.search(r"[0-9a-f]{32}", rows)  # no hashes
    assert page.inner_text("#audit-range") == f"decisions 1–{min(total, 50)} of {total}, newest first"
    with page.expect_download() as download:
        page.click("#audit-csv")
    csv_bytes = Path(download.value.path()).read_bytes()
    lines = csv_bytes.decode().removesuffix("\r\n").split("\r\n")  # RFC 4180 line ends
    assert lines[0].startswith("id,time,key_name,route,verdict") and len(lines) == total + 1
    assert download.value.suggested_filename.startswith("brushprint-audit-")
    with page.expect_download() as download:  # the whole collection, as `python -m service import` restores it
        page.click("#archive-download")
    assert download.value.suggested_filename.startswith("brushprint-archive-")
    with tarfile.open(download.value.path()) as tar:
        assert "manifest.json" in tar.getnames() and "works.jsonl" in tar.getnames()
    _shot(page, shots, "08-audit")

    # ---- phone width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("[data-tab=verify]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(page, shots, "06-phone")
    # the browser logs each failed request; the 401 (wrong key) and 415 (not a picture) above were provoked
    expected = ("status of 401", "status of 415")
    assert not [e for e in console_errors if not any(x in e for x in expected)], console_errors
    context.close()


_CLS = {"consistent": "consistent", "inconclusive": "inconclusive", "not_consistent": "not-consistent"}


def test_a_verify_key_sees_no_admin_tab_and_types_the_artist(server: Server, browser):  # type: ignore[no-untyped-def]
    r = httpx.post(
        server.base_url + "/v1/keys", json={"name": "browser-desk", "scope": "verify"}, headers=server.headers()
    )
    assert r.status_code == 201, r.text
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.fill("#key-input", r.json()["key"])
    page.click("#key-use")
    page.wait_for_selector("#key-status.good")
    assert "Verify key" in page.inner_text("#key-status")
    assert "(default)" in page.inner_text("#collection-status")
    assert page.is_hidden("#admin-tab")
    page.click("[data-tab=verify]")
    assert page.is_visible("#verify-artist-id")
    page.fill("#verify-artist-id", "nobody-here")
    page.set_input_files("#verify-image", str(_one(server)))
    page.click("#verify-go")
    page.wait_for_selector("#error:not([hidden])")
    assert "[unknown_artist]" in page.inner_text("#error")
    context.close()


def test_the_operator_sees_collections_and_a_dealer_its_own(server: Server, browser, shots: Path):  # type: ignore[no-untyped-def]
    """An operator key shows the collections (and no compare/verify tabs); a key of another collection shows that
    collection's name, and nothing of the default collection's artists."""
    op = {"X-API-Key": OPERATOR_KEY}
    r = httpx.post(server.base_url + "/v1/collections", json={"id": "dealer-b", "name": "Dealer B"}, headers=op)
    assert r.status_code == 201, r.text
    dealer_key = r.json()["key"]["key"]
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.fill("#key-input", OPERATOR_KEY)
    page.click("#key-use")
    page.wait_for_selector("#key-status.good")
    assert "Operator key" in page.inner_text("#key-status")
    assert "No collection" in page.inner_text("#collection-status")
    assert page.is_visible("#tab-collections") and page.is_visible("#collections-tab")
    assert page.is_hidden("[data-tab=compare]") and page.is_hidden("[data-tab=verify]") and page.is_hidden("#admin-tab")
    _wait(page, "() => document.querySelectorAll('#collections-table tbody tr').length >= 2")
    rows = page.inner_text("#collections-table tbody")
    assert "default" in rows and "Dealer B" in rows
    _shot(page, shots, "09-collections")

    page.fill("#key-input", dealer_key)
    page.click("#key-use")
    _wait(page, "() => document.querySelector('#key-status').textContent.includes('Admin key')")
    assert "Collection: Dealer B (dealer-b)" in page.inner_text("#collection-status")
    assert page.is_hidden("#collections-tab") and page.is_hidden("#tab-collections")
    page.click("#admin-tab")
    assert page.inner_text("#artists-table tbody").strip() == ""  # the default collection's vermeer is not here
    context.close()


def _wait(page, predicate: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a JavaScript predicate. (Playwright's wait_for_function evaluates strings inside the page, which the
    page's Content-Security-Policy forbids, as it should: the test runs the page under its real policy.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        shown = page.evaluate(
            "() => { const e = document.querySelector('#error'); return e.hidden ? '' : e.textContent }"
        )
        assert time.monotonic() < deadline, f"timed out waiting for {predicate} (the page's error: {shown!r})"
        page.wait_for_timeout(100)


def _one(server: Server) -> Path:
    p = server.data_dir.parent / "one.jpg"
    p.write_bytes(painting_jpeg(4, 0))
    return p


def _overlay_painted(page, selector: str) -> bool:  # type: ignore[no-untyped-def]
    """The evidence canvas is shown over the query and has pixels drawn on it."""
    return bool(
        page.evaluate(
            """(sel) => {
            const c = document.querySelector(sel);
            if (!c || c.hidden || !c.width) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
            return false;
        }""",
            selector,
        )
    )


def test_the_api_reference_works_without_internet(server: Server, browser):  # type: ignore[no-untyped-def]
    """/docs (Swagger UI) and /redoc render in a browser that can reach nothing but the service: every asset they
    load is the service's own (the pinned fastapi-offline package's files), none a CDN's."""
    context = browser.new_context()
    outside: list[str] = []

    def only_the_service(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(server.base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.goto(server.base_url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() >= 10  # every route, as documented
    assert "/v1/verify" in page.inner_text(".swagger-ui")
    page.goto(server.base_url + "/redoc")
    page.wait_for_selector("[role=navigation], .menu-content", timeout=30_000)
    assert "Verify a painting against an artist's portfolio" in page.inner_text("body")
    assert outside == []
    context.close()


def test_artists_and_the_audit_log_page_beyond_one_request(server: Server, browser, tmp_path: Path):  # type: ignore[no-untyped-def]
    """More artists than the API gives in one page (500) all load, paged on the page; the audit log pages back
    through more decisions than one screen shows. (Last in this file: it adds hundreds of artists.)"""
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=60) as c:
        for i in range(505):
            r = c.post("/v1/artists", json={"id": f"bulk-{i:03d}", "name": f"Bulk Painter {i:03d}"})
            assert r.status_code == 201, r.text
        query = Path(_photos(tmp_path, ["coffee"])[0]).read_bytes()
        for _ in range(55):
            assert c.post("/v1/identify", files={"image": ("q.jpg", query, "image/jpeg")}).status_code == 200
        artists = c.get("/v1/artists", params={"limit": 1}).json()["total"]
        decisions = c.get("/v1/audit", params={"limit": 1}).json()["total"]
    assert artists > 500 and decisions > 50

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.fill("#key-input", ADMIN_KEY)
    page.click("#key-use")
    page.wait_for_selector("#key-status.good")
    page.click("#admin-tab")
    assert page.inner_text("#artists-range") == f"artists 1–50 of {artists}"
    assert page.is_disabled("#artists-prev")
    pages = -(-artists // 50)
    for _ in range(pages - 1):
        page.click("#artists-next")
    last = (pages - 1) * 50
    assert page.inner_text("#artists-range") == f"artists {last + 1}–{artists} of {artists}"
    assert page.is_disabled("#artists-next") and "Bulk Painter 504" in page.inner_text("#artists-table tbody")

    page.click("#audit-load")
    _wait(page, "() => document.querySelector('#audit-range').textContent.startsWith('decisions 1–50 ')")
    assert page.inner_text("#audit-range") == f"decisions 1–50 of {decisions}, newest first"
    assert page.locator("#audit-table tbody tr").count() == 50 and page.is_disabled("#audit-newer")
    page.click("#audit-older")
    _wait(page, "() => document.querySelector('#audit-range').textContent.startsWith('decisions 51–')")
    shown = min(decisions, 100) - 50
    assert page.inner_text("#audit-range") == f"decisions 51–{50 + shown} of {decisions}, newest first"
    assert page.locator("#audit-table tbody tr").count() == shown
    page.click("#audit-newer")
    _wait(page, "() => document.querySelector('#audit-range').textContent.startsWith('decisions 1–50 ')")
    context.close()
