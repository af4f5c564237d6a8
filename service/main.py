"""`create_app(settings) -> FastAPI`: wiring only. The logic lives in service/serving/ (`Runtime`: the serving bundle,
the scorer, the portfolios), storage in service/storage/, routes in service/api/.

Lifespan: open the database (migrated under a lock, service/storage/db.py), load the model and its bundle
(`Runtime.from_settings`), start the micro-batcher and the model switch (service/ops/upgrade.py), open the key
store and the audit log on the same database, bootstrap the admin key. Every error leaves as
`{"error": {"code", "message"}}`, written by service/api/errors.py. Covered by tests/service/test_api_*.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api import ROUTERS
from service.api.errors import install as install_error_handlers
from service.api.metrics import Metrics
from service.api.middleware import Admission, AdmissionLimit, ApiKeyGate, BodySizeLimit, ObserveRequests
from service.api.ratelimit import RateLimiter
from service.api.schemas import ErrorBody
from service.config import Settings
from service.ops.backup import Downloads
from service.ops.firstrun import announce
from service.ops.upgrade import ModelGate, ModelSwitch
from service.serving.bundle import Bundle
from service.serving.runtime import Runtime
from service.storage.audit import AuditLog
from service.storage.keys import KeyStore, Scope

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
Were these two paintings made by the same artist? Is this painting by artist X, judged against X's reference
portfolio?

**Keys and collections.** Every `/v1` route needs an `X-API-Key` header. A deployment holds collections (one per
dealer); a key of scope `admin` or `verify` belongs to one and sees that collection only: its artists, works,
keys, decision log, identify candidates and calibration. Scope `verify` may call compare, verify and identify;
scope `admin` everything in its collection (artists, works, keys, audit); scope `operator` manages collections
(`/v1/collections`) and sees inside none. An id of another collection answers exactly as an id that does not
exist.

**Strictness.** Scoring routes take at most one of the form fields `threshold` (match when score ≥ threshold),
`max_fpr` (the most sensitive calibrated threshold whose expected false-positive rate is at most this) or
`min_precision`. Without one, compare uses the model card's recommended operating point and verify the
equal-error point of the portfolio calibration it is judged by (`rule` in the answer says which). Every answer
carries the expected false-positive and false-negative rates at the threshold it used.

**Errors.** Always `{"error": {"code": "...", "message": "..."}}` with a stable `code`. A 5xx is a bug.
"""


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics: Metrics = app.state.metrics
        runtime = Runtime.from_settings(settings, on_batch=metrics.observe_batch)

        def model_metrics(b: Bundle) -> None:
            card = b.model.card
            metrics.set_model(b.model_id, card.name, card.version, card.backbone.arch, card.head.kind)

        try:
            await runtime.start()
            switch = ModelSwitch(runtime, settings.model_dir, settings.model_poll_seconds)
            switch.on_switch = model_metrics
            await switch.start()
            app.state.model_switch = switch
            keys, audit = KeyStore(runtime.db), AuditLog(runtime.db)
            if settings.admin_key is not None:
                runtime.collections.ensure(settings.admin_key_collection)
                secret = settings.admin_key.get_secret_value()
                keys.ensure(settings.admin_key_name, secret, Scope.admin, settings.admin_key_collection)
            if settings.operator_key is not None:
                keys.ensure(settings.operator_key_name, settings.operator_key.get_secret_value(), Scope.operator, None)
            model_metrics(runtime.bundle)
            metrics.gauge_from(
                "brushprint_batch_queue_depth", "Images waiting for the backbone", lambda: runtime.embedder.queue_depth
            )
            cache_metrics(metrics, runtime)
            metrics.gauge_from(
                "brushprint_batch_max_size",
                "Backbone inputs (crops) per run at most (BATCH_MAX_SIZE, or the provider's default when unset)",
                lambda: runtime.embedder.batcher.max_batch,
            )
            app.state.runtime, app.state.keys, app.state.audit = runtime, keys, audit
            app.state.downloads = Downloads(runtime.db, settings.data_dir)
            announce(settings, keys)
            b = runtime.bundle
            ready = {
                "model": b.model_id,
                "providers": b.model.providers,
                "batch_max_size": runtime.settings.batch_max_size,
            }
            log.info("ready", extra={"fields": ready})
            yield
        finally:
            if app.state.model_switch is not None:
                await app.state.model_switch.stop()
                app.state.model_switch = None
            await runtime.stop()
            runtime.close()
            app.state.runtime = None

    return lifespan


def cache_metrics(metrics: Metrics, runtime: Runtime) -> None:
    """The embedding cache's figures (service/serving/cache.py), the process's over every collection: no label
    names a collection, since /metrics needs no key."""
    stats = runtime.factory.cache_stats
    what = "Uploads looked up in the embedding cache"
    metrics.counter_from("brushprint_embedding_cache_hits", f"{what} and found", lambda: stats.hits)
    metrics.counter_from("brushprint_embedding_cache_misses", f"{what} and not found", lambda: stats.misses)
    metrics.counter_from(
        "brushprint_embedding_cache_shared",
        "Uploads not found in the embedding cache and answered by the same upload's embedding then in flight",
        lambda: stats.shared,
    )
    metrics.counter_from(
        "brushprint_embedding_cache_evictions",
        "Embedded uploads dropped from the embedding cache to keep it within BRUSHPRINT_EMBEDDING_CACHE_MB",
        lambda: stats.evictions,
    )
    metrics.gauge_from(
        "brushprint_embedding_cache_bytes",
        "Bytes of embedded uploads the serving model's embedding cache holds",
        lambda: runtime.bundle.cache.nbytes,
    )
    metrics.gauge_from(
        "brushprint_embedding_cache_entries",
        "Embedded uploads the serving model's embedding cache holds",
        lambda: len(runtime.bundle.cache),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="brushprint",
        summary="Painting authentication: were these paintings made by the same artist?",
        description=API_DESCRIPTION,
        version=_version(),
        lifespan=_lifespan(settings),
        docs_url=None,  # /docs and /redoc are service/api/docs.py's: their assets served here, not from a CDN
        redoc_url=None,
        responses={500: {"model": ErrorBody, "description": "`internal_error`: a bug; quote the X-Request-ID"}},
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.collection_limiter = RateLimiter(
        settings.collection_rate_limit_per_minute, settings.collection_rate_limit_burst
    )
    app.state.runtime = None
    app.state.model_switch = None
    app.state.keys = None
    app.state.downloads = None
    app.state.admission = Admission(settings.max_inflight)
    app.state.metrics.gauge_from(
        "brushprint_admitted_in_flight",
        f"Scoring and enrolment requests being served (at most max_inflight = {settings.max_inflight})",
        lambda: app.state.admission.in_flight,
    )
    for router in ROUTERS:
        app.include_router(router)

    install_error_handlers(app)

    # Added last = outermost. ObserveRequests sees (and times) every answer; then the key gate, so a caller
    # without a valid key gets 401 whatever its body; then the size check and the admission limit. All three
    # answer from the headers, before anything reads the body.
    routes = [route for router in ROUTERS for route in router.routes]
    app.add_middleware(ModelGate, switch=lambda: app.state.model_switch)
    app.add_middleware(AdmissionLimit, admission=app.state.admission, routes=routes)
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
                {"name": "collections", "description": "collections and their first keys (scope `operator`)"},
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
