"""`create_app(settings) -> FastAPI`: wiring only. The logic lives in `service.engine`; routes in `service.api`.

Lifespan: load the model and the gallery (`Engine.from_settings`), start the micro-batcher, open the key store
and the audit log on the same database, bootstrap the admin key. Every error leaves as
`{"error": {"code", "message"}}`. Covered by tests/service/test_api_*.py.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api import ROUTERS
from service.api.middleware import Admission, AdmissionLimit, ApiKeyGate, BodySizeLimit, ObserveRequests
from service.api.schemas import ErrorBody
from service.audit import AuditLog
from service.batching import Overloaded
from service.config import Settings
from service.engine import Engine
from service.errors import ApiError
from service.firstrun import announce
from service.metrics import Metrics
from service.security import KeyStore, RateLimiter, Scope

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
Were these two paintings made by the same artist? Is this painting by artist X, judged against X's reference
portfolio?

**Keys.** Every `/v1` route needs an `X-API-Key` header. Scope `verify` may call compare, verify and identify;
scope `admin` may call everything (artists, works, keys, audit).

**Strictness.** Scoring routes take at most one of the form fields `threshold` (match when score ≥ threshold),
`max_fpr` (the most sensitive calibrated threshold whose expected false-positive rate is at most this) or
`min_precision`. Without one, compare uses the model card's recommended operating point and verify the
equal-error point of the portfolio calibration it is judged by (`rule` in the answer says which). Every answer
carries the expected false-positive and false-negative rates at the threshold it used.

**Errors.** Always `{"error": {"code": "...", "message": "..."}}` with a stable `code`. A 5xx is a bug.
"""

_HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}
# The requests that upload images for the model: the admission limit counts these and only these.
ADMITTED_ROUTES = frozenset(
    {
        ("POST", "/v1/compare"),
        ("POST", "/v1/verify"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/artists/{artist_id}/works"),
    }
)
_STRICTNESS_CODES = {"threshold": "invalid_threshold", "max_fpr": "invalid_operating_point"}
_STRICTNESS_CODES["min_precision"] = "invalid_operating_point"
_STRICTNESS_CODES.update(evidence="invalid_evidence", max_side="invalid_max_side")  # same codes as the engine's


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message, exc.headers or None)


async def _overloaded(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Overloaded)
    retry = max(1, math.ceil(exc.retry_after))
    return _error(503, "overloaded", str(exc), {"Retry-After": str(retry)})


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    parts, code = [], "invalid_request"
    for e in errors[:5]:
        loc = [str(p) for p in e.get("loc", ())]
        where, field = (loc[0] if loc else "body"), ".".join(loc[1:])
        what = "required, but missing" if e.get("type") == "missing" else e.get("msg", "invalid")
        parts.append(f"{field} ({where}): {what}" if field else f"request {where}: {what}")
        if len(errors) == 1 and field in _STRICTNESS_CODES:
            code = _STRICTNESS_CODES[field]
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return _error(422, code, "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
    return _error(exc.status_code, code, str(exc.detail), headers or None)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any route serves at `path`. Starlette's own Allow names only the first route matching the
    path, and GET and POST of one resource are separate routes here."""
    patterns = getattr(app.state, "path_methods", None)
    if patterns is None:
        patterns = [
            (re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(p)) + "$"), {m.upper() for m in ops})
            for p, ops in app.openapi().get("paths", {}).items()
        ]
        app.state.path_methods = patterns
    methods = set().union(*(m for rx, m in patterns if rx.match(path)))
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Normally ObserveRequests answers first; this is the net under it.
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return _error(500, "internal_error", "internal error")


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics: Metrics = app.state.metrics
        engine = Engine.from_settings(settings, on_batch=metrics.observe_batch)
        try:
            await engine.start()
            db = engine.gallery.db
            keys, audit = KeyStore(db), AuditLog(db)
            if settings.admin_key is not None:
                keys.ensure(settings.admin_key_name, settings.admin_key.get_secret_value(), Scope.admin)
            card = engine.model.card
            metrics.set_model(engine.model_id, card.name, card.version, card.backbone.arch, card.head.kind)
            metrics.gauge_from(
                "brushprint_batch_queue_depth", "Images waiting for the backbone", lambda: engine.batcher.queue_depth
            )
            metrics.gauge_from("brushprint_references", "Reference works in the index", lambda: len(engine.gallery))
            metrics.gauge_from(
                "brushprint_works_missing_embedding",
                "Enrolled works without an embedding of the current model",
                lambda: engine.gallery.missing,
            )
            app.state.engine, app.state.keys, app.state.audit = engine, keys, audit
            announce(settings, keys)
            log.info(
                "ready",
                extra={
                    "fields": {
                        "model": engine.model_id,
                        "providers": engine.model.providers,
                        "references": len(engine.gallery),
                    }
                },
            )
            yield
        finally:
            await engine.stop()
            engine.close()
            app.state.engine = None

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="brushprint",
        summary="Painting authentication: were these paintings made by the same artist?",
        description=API_DESCRIPTION,
        version=_version(),
        lifespan=_lifespan(settings),
        responses={500: {"model": ErrorBody, "description": "`internal_error`: a bug; quote the X-Request-ID"}},
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.engine = None
    app.state.keys = None
    app.state.admission = Admission(settings.max_inflight)
    app.state.metrics.gauge_from(
        "brushprint_admitted_in_flight",
        f"Scoring and enrolment requests being served (at most max_inflight = {settings.max_inflight})",
        lambda: app.state.admission.in_flight,
    )
    for router in ROUTERS:
        app.include_router(router)

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

    # Added last = outermost. ObserveRequests sees (and times) every answer; then the key gate, so a caller
    # without a valid key gets 401 whatever its body; then the size check and the admission limit. All three
    # answer from the headers, before anything reads the body.
    routes = [route for router in ROUTERS for route in router.routes]
    app.add_middleware(AdmissionLimit, admission=app.state.admission, routes=routes, limited=ADMITTED_ROUTES)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiKeyGate, keys=lambda: app.state.keys, routes=routes)
    app.add_middleware(ObserveRequests, metrics=app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=[
                {"name": "scoring", "description": "compare, verify, identify (scope `verify` or `admin`)"},
                {"name": "artists", "description": "artists and their reference works (scope `admin`)"},
                {"name": "keys", "description": "API keys (scope `admin`)"},
                {"name": "audit", "description": "the decision log (scope `admin`)"},
                {"name": "operations", "description": "health, readiness, metrics (no key)"},
            ],
        )
        # FastAPI documents its own 422 body; ours is the error envelope like every other failure.
        for path in schema.get("paths", {}).values():
            for op in path.values():
                if isinstance(op, dict) and "422" in op.get("responses", {}):
                    op["responses"]["422"] = {
                        "description": op["responses"]["422"].get("description", "Validation error"),
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    }
        app.openapi_schema = schema
    return app.openapi_schema


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("brushprint")
    except Exception:
        return "0.0.0"
