"""The API's reference pages, `/docs` (Swagger UI) and `/redoc`, working without internet: their scripts, styles and
icon are served by the service itself from the pinned PyPI package `fastapi-offline` (which ships them), never from
a CDN, and ReDoc is asked for no web fonts. Not part of the OpenAPI schema. Covered by tests/web/test_page.py and
tests/service/test_api_health.py.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from service.errors import NotFound

ASSETS_URL = "/docs/assets"
_DIR = Path(str(files("fastapi_offline") / "static"))
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css", ".png": "image/png"}
# the package's files when the service starts: any other name is a 404, so no path ever reaches the disk
ASSETS = {p.name: _TYPES[p.suffix] for p in _DIR.iterdir() if p.is_file() and p.suffix in _TYPES}

# Only the service's own assets, whatever the bundles reference (ReDoc's footer logo points at its vendor's CDN):
# the browser blocks any other origin before a request leaves. The pages' bootstrap scripts are inline.
POLICY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


def _page(html: HTMLResponse) -> HTMLResponse:
    html.headers.update(POLICY)
    return html


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    app = request.app
    root = request.scope.get("root_path", "")
    return _page(
        get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API reference",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )
    )


@router.get("/docs/oauth2-redirect")
def swagger_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _page(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} — API reference",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


@router.get(ASSETS_URL + "/{name}")
def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound("not_found", f"no documentation asset {name!r}")
    return FileResponse(_DIR / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
