"""The HTTP edge of every failure: the one table from exception kinds to status codes, and the one writer of the
error body `{"error": {"code", "message"}}`, used by the exception handlers and by the ASGI middlewares alike.

The code that knows raises a domain exception (service/errors.py); nothing below the routers names a status.
`STATUS` is looked up along the exception's class hierarchy, so a named failure (`UnknownArtist`) answers as
its kind (`NotFound` → 404). `Retry-After` comes from the exception's `retry_after`, rounded up to whole
seconds (at least 1). `install(app)` registers the handlers. Covered by tests/service/test_errors.py.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import Send

from contract.decode import ImageTooLarge, InvalidImage, UnsupportedImage
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from service.serving.strictness import range_message

log = logging.getLogger(__name__)

# Exception class → HTTP status; subclasses answer as their nearest listed ancestor.
STATUS: dict[type[Exception], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Invalid: 422,
    RateLimited: 429,
    Unavailable: 503,
    # a picture the contract refuses is the caller's to fix; its class says which 4xx
    ImageTooLarge: 413,
    UnsupportedImage: 415,
    InvalidImage: 422,
}

# Statuses the router itself answers (no route, wrong method, ...): their codes.
_HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}
# A request validation error on exactly one of these fields (out of range, or not spelled as service/api/fields.py
# reads numbers) gets the field's own code: the code the serving layer refuses the same value with.
_FIELD_CODES = {
    "threshold": "invalid_threshold",
    "max_fpr": "invalid_operating_point",
    "min_precision": "invalid_operating_point",
    "evidence": "invalid_evidence",
    "max_side": "invalid_max_side",
    "k": "invalid_k",
    "offset": "invalid_pagination",
    "limit": "invalid_pagination",
}


_STRICTNESS = {"threshold", "max_fpr", "min_precision"}
_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def status_of(exc: BaseException) -> int:
    """The HTTP status `exc` answers with: 500 for anything not in `STATUS` (a bug)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def headers_of(exc: BaseException) -> dict[str, str]:
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type="application/json")


async def send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    """The same answer as `error_response`, sent straight from an ASGI middleware."""
    body = error_body(code, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_exception(send: Send, exc: Any, headers: dict[str, str] | None = None) -> None:
    """Answer a mapped exception from a middleware; `headers` (e.g. `Connection: close`) replace its own."""
    await send_error(send, status_of(exc), exc.code, exc.message, headers if headers is not None else headers_of(exc))


async def _mapped(_: Request, exc: Exception) -> Response:
    code, message = getattr(exc, "code", "internal_error"), getattr(exc, "message", "internal error")
    return error_response(status_of(exc), code, message, headers_of(exc) or None)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    parts, code = [], "invalid_request"
    for e in errors[:5]:
        loc = [str(p) for p in e.get("loc", ())]
        where, field = (loc[0] if loc else "body"), ".".join(loc[1:])
        what = "required, but missing" if e.get("type") == "missing" else e.get("msg", "invalid")
        parts.append(f"{field} ({where}): {what}" if field else f"request {where}: {what}")
        if len(errors) == 1 and field in _FIELD_CODES:
            code = _FIELD_CODES[field]
            if field in _STRICTNESS and e.get("type") in _OUT_OF_RANGE:
                parts[-1] = range_message(field, e.get("input"))  # the serving layer's words, with its hint
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return error_response(422, code, "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
    return error_response(exc.status_code, code, str(exc.detail), headers or None)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method a route of the app serves at `path`: API, page and docs alike, read from the routes themselves
    (not the OpenAPI schema, which leaves the page out), so Allow names exactly what is answered there. Starlette's
    own Allow names only the first route matching the path, and GET and POST of one resource are separate routes
    here."""
    table = getattr(app.state, "path_methods", None)
    if table is None:
        table = [
            (compile_path(rc.path)[0], frozenset(rc.methods))
            for rc in iter_route_contexts(app.routes)
            if rc.path and rc.methods
        ]
        app.state.path_methods = table
    return sorted(set().union(*(methods for rx, methods in table if rx.match(path))))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Normally ObserveRequests answers first; this is the net under it.
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    """Register the handlers: every class in `STATUS` (read now, so add classes before calling), validation and
    routing errors, and the last-resort 500."""
    for cls in STATUS:
        app.add_exception_handler(cls, _mapped)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
