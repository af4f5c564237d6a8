"""The page at `/`: plain HTML, CSS and JavaScript shipped in the package (service/web/), no build step.

Served without a key (the page itself holds no data; it asks for a key and keeps it in sessionStorage). A strict
Content-Security-Policy allows only this origin's scripts and styles, so nothing injected could read the key.
Not part of the OpenAPI schema: it is not an API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import NotFound

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
# the files there when the service starts: a name outside this set is a 404, so no path ever reaches the disk
ASSETS = {p.name: _TYPES[p.suffix] for p in WEB_DIR.glob("*") if p.is_file() and p.suffix in _TYPES}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound("not_found", f"no page asset {name!r}")
    return FileResponse(WEB_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
def page() -> FileResponse:
    return _asset("index.html")


@router.api_route("/web/{name}", methods=["GET", "HEAD"])
def asset(name: str) -> FileResponse:
    return _asset(name)
