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
_LOADED = "[...document.querySelectorAll('%s')].filter(i => i.naturalWidth > 0).length"  # pictures shown
CHROMIUM = os.environ.get("BRUSHPRINT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert (SHIPPED / "model.json").is_file(), "the browser tests use the shipped model models/default"
    data = tmp_path_factory.mktemp("browser-data")
    env = {"BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0", "BRUSHPRINT_PROVIDERS": "cpu"}
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


def _files(tmp: Path, name: str, artist: int, indices: list[int]) -> list[str]:
    paths = []
    for i in indices:
        p = tmp / f"{name}-{artist}-{i}.jpg"
        p.write_bytes(painting_jpeg(artist, i, (320, 240)))
        paths.append(str(p))
    return paths


def test_a_dealer_walks_through_the_page(server: Server, browser, shots: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
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
    # the key is in this tab's sessionStorage only: not in the URL, no cookie, not left in the input
    assert page.evaluate("sessionStorage.getItem('brushprint.key')") == ADMIN_KEY
    assert ADMIN_KEY not in page.url and context.cookies() == [] and page.input_value("#key-input") == ""

    # ---- enrol an artist and three reference works
    page.click("#admin-tab")
    page.fill("#artist-id", "vermeer")
    page.fill("#artist-name", "Johannes Vermeer")
    page.click("#artist-form button[type=submit]")
    page.wait_for_selector("#artist-detail:not([hidden])")
    page.set_input_files("#works-files", _files(tmp_path, "ref", 2, [0, 1, 2]))
    page.click("#works-upload")
    _wait(page, "() => document.querySelector('#works-status').textContent.includes('3 works enrolled')")
    assert page.evaluate("document.querySelector('#works-progress').value") == 100
    _wait(page, f"() => {_LOADED % '#works-grid img'} === 3")
    assert "3" in page.inner_text("#artists-table tbody")
    works = httpx.get(server.base_url + "/v1/artists/vermeer/works", headers=server.headers()).json()["works"]
    assert len(works) == 3
    page.click("#audit-load")
    _shot(page, shots, "04-admin")

    # ---- compare two paintings at "at most 1 % false matches", with an evidence map of A
    page.click("[data-tab=compare]")
    a, b = _files(tmp_path, "cmp", 3, [0, 1])
    page.set_input_files("#compare-a", a)
    page.set_input_files("#compare-b", b)
    page.select_option("#compare-preset", "fpr1")
    page.check("#compare-evidence")
    page.select_option("#compare-grid", "2")
    page.click("#compare-go")
    page.wait_for_selector("#compare-result:not([hidden])")
    text = page.inner_text("#compare-result")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        direct = httpx.post(
            server.base_url + "/v1/compare",
            files={"image_a": fa, "image_b": fb},
            data={"max_fpr": "0.01"},
            headers=server.headers(),
        ).json()
    assert f"score {direct['score']:.3f}" in text and f"threshold {direct['threshold']:.3f}" in text
    assert "max_fpr<=0.01" in text
    assert re.search(r"different-artist pairs is called a match|none of the (\d+ )?different-artist pairs", text)
    # the rate's 95 % bound in words wherever the table's counts give one ("at most 1 in 19 with 95 % confidence")
    assert ("with 95 % confidence" in text) == (direct["expected_fpr_upper"] is not None)
    assert ("Match:" in text) == direct["match"]
    assert "Evidence map: " in text and "of 4 regions" in text
    assert _overlay_painted(page, "#tab-compare canvas.overlay")
    _shot(page, shots, "02-compare")

    # ---- verify against the artist: decision, reference thumbnails, calibration, evidence map
    page.click("[data-tab=verify]")
    page.select_option("#verify-artist", "vermeer")
    page.set_input_files("#verify-image", _files(tmp_path, "q", 2, [7]))
    page.select_option("#verify-grid", "3")
    page.click("#verify-go")
    page.wait_for_selector("#verify-result:not([hidden])")
    _wait(page, f"() => {_LOADED % '#verify-result .thumb img'} === 3")
    text = page.inner_text("#verify-result")
    assert "Judged against 3 reference works" in text and "Calibration: model card" in text and "Why: " in text
    assert "of 9 regions" in text and "not proof" in text
    assert text.count("score ") >= 4  # the decision and each reference work
    assert _overlay_painted(page, "#tab-verify canvas.overlay")
    _shot(page, shots, "03-verify")

    # ---- an error the API gives is shown as its message
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a picture at all")
    page.set_input_files("#verify-image", str(bad))
    page.click("#verify-go")
    page.wait_for_selector("#error:not([hidden])")
    assert "[unsupported_format]" in page.inner_text("#error")
    assert page.is_hidden("#verify-result")  # the previous painting's verdict is not left standing
    _shot(page, shots, "05-error")

    # ---- the audit log lists the decisions just made
    page.click("#admin-tab")
    page.click("#audit-load")
    page.wait_for_selector("#audit-table:not([hidden])")
    # the table is already shown (loaded once, empty, while enrolling): wait for this load's rows
    _wait(page, "() => document.querySelector('#audit-table tbody').rows.length > 0")
    rows = page.inner_text("#audit-table tbody")
    assert "compare" in rows and "verify" in rows

    # ---- phone width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("[data-tab=verify]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(page, shots, "06-phone")
    # the browser logs each failed request; the 401 (wrong key) and 415 (not a picture) above were provoked
    expected = ("status of 401", "status of 415")
    assert not [e for e in console_errors if not any(x in e for x in expected)], console_errors
    context.close()


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
    assert page.is_hidden("#admin-tab")
    page.click("[data-tab=verify]")
    assert page.is_visible("#verify-artist-id")
    page.fill("#verify-artist-id", "nobody-here")
    page.set_input_files("#verify-image", str(_one(server)))
    page.click("#verify-go")
    page.wait_for_selector("#error:not([hidden])")
    assert "[unknown_artist]" in page.inner_text("#error")
    context.close()


def _wait(page, predicate: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a JavaScript predicate. (Playwright's wait_for_function evaluates strings inside the page, which the
    page's Content-Security-Policy forbids, as it should: the test runs the page under its real policy.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
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
