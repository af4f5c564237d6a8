"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks streaming): the API-key gate and the
admission limit, both answering before a byte of the body is read; the request-size limit; and one layer that
gives every request an id, times it for Prometheus, writes the access log and turns any unexpected exception into
a 500 `internal_error` without a traceback in the body. Their answers are written by service/api/errors.py, as the
exception handlers' are. Covered by tests/service/test_api_auth.py, tests/service/test_api_health.py and
tests/reliability/test_admission.py.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract.decode import megabytes
from service.api.errors import headers_of, send_error, send_exception
from service.api.metrics import UNMATCHED_ROUTE, Metrics
from service.errors import BadRequest, Overloaded, ServiceError, TooLarge
from service.storage.keys import KeyStore

access_log = logging.getLogger("service.access")
error_log = logging.getLogger("service.errors")

REQUEST_ID_HEADER = "X-Request-ID"
API_KEY_HEADER = "X-API-Key"
# The API's one prefix: every API router is declared under it, and every request under it needs a key.
API_PREFIX = "/v1"
KEYED_PREFIX = API_PREFIX + "/"
ADMITTED = "admitted"  # the attribute `admitted` sets on an endpoint
# A refused request's unread body up to this size is left for the server to drain, keeping the connection;
# a bigger or undeclared (chunked) one gets `Connection: close` so nobody can make us drain without end.
DRAIN_LIMIT_BYTES = 1024 * 1024
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class RequestTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length grows past the limit.

    A FastAPI HTTPException on purpose: FastAPI re-raises those from body parsing (anything else would become a
    400), and the app's HTTPException handler renders it as 413 `request_too_large`.
    """

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {megabytes(limit)}")


class BodySizeLimit:
    """Refuse bodies over `max_bytes`: at once from Content-Length (nothing is read), else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_exception(send, BadRequest("invalid_request", "the Content-Length header is not a number"))
                return
            if int(declared) > self.max_bytes:
                too_large = TooLarge(
                    "request_too_large",
                    f"the request body is {megabytes(int(declared))}; the limit is {megabytes(self.max_bytes)}",
                )
                # Connection: close, since the unread body is still on the socket.
                await send_exception(send, too_large, {"Connection": "close"})
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestTooLarge as e:
            if started:
                raise
            await send_exception(send, TooLarge("request_too_large", str(e.detail)), {"Connection": "close"})


def refusal_headers(scope: Scope, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """Headers for an answer sent without reading the body.

    A small declared body is left for the server's HTTP parser to drop as it arrives: closing a socket that
    still holds unread data sends a TCP reset, which can destroy the answer before the client reads it
    (bench/load.py: most shed requests then ended as transport errors instead of 503s). A body that is large
    or of unknown length is not worth draining: the connection is closed.
    """
    out = dict(headers or {})
    declared = Headers(scope=scope).get("content-length")
    chunked = declared is None and "transfer-encoding" in Headers(scope=scope)
    too_big = declared is not None and (not declared.isdigit() or int(declared) > DRAIN_LIMIT_BYTES)
    if chunked or too_big:
        out["Connection"] = "close"
    return out or None


def match_route(routes: Sequence[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route of `routes` that serves this request (a method mismatch counts, as the router's 405 does),
    found before routing so the middleware's own answers carry the route template in the metrics and the
    access log, and the admission limit knows which route is asked for."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


class ApiKeyGate:
    """Every `/v1/` request needs a valid `X-API-Key`, checked from the headers before the body is read.

    A caller without a valid key is refused with 401 (`missing_api_key` / `invalid_api_key`, the key store's
    own verdict) and costs neither the buffering nor the parsing of its body, whatever the body is (see
    `refusal_headers` for what happens to the unread bytes). The key found is left in
    `scope["state"]["api_key"]`, so the route's scope and rate-limit dependency need not look it up again.
    """

    def __init__(self, app: ASGIApp, keys: Callable[[], KeyStore | None], routes: Sequence[BaseRoute] = ()):
        self.app = app
        self.keys = keys
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(KEYED_PREFIX):
            await self.app(scope, receive, send)
            return
        store = self.keys()
        if store is None:  # not started yet: the route's own dependency has the last word
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get(API_KEY_HEADER)
        try:
            if not presented:
                store.authenticate(presented)  # raises 401 `missing_api_key` at once: no lookup to make
            # a database read: kept off the event loop
            key = await run_in_threadpool(store.authenticate, presented)
        except ServiceError as e:
            route = match_route(self.routes, scope)
            if route is not None:
                scope["route"] = route
            await send_exception(send, e, refusal_headers(scope, headers_of(e)))
            return
        state = scope.setdefault("state", {})
        state["api_key"] = key
        state["key_name"] = key.name  # for the access log: the key's name, never the key
        await self.app(scope, receive, send)


def admitted(endpoint: Endpoint) -> Endpoint:
    """Declares a route an upload for the model (scoring or enrolment): `AdmissionLimit` counts it and sheds it
    when `max_inflight` of them are being served. Put it under the route decorator:

        @router.post("/compare", ...)
        @admitted
        async def compare(...): ...
    """
    setattr(endpoint, ADMITTED, True)
    return endpoint


def is_admitted(route: BaseRoute | None) -> bool:
    return bool(getattr(getattr(route, "endpoint", None), ADMITTED, False))


class Admission:
    """How many of the expensive requests (uploads to score or enrol) are being served, and how many may be.

    One event loop serves the app, so a plain counter is exact: nothing awaits between the test and the
    increment.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self.limit = limit
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class AdmissionLimit:
    """Shed the expensive routes — those declared `@admitted` — with 503 `overloaded` + Retry-After once
    `admission.limit` of them are in flight, before their body is read: under overload a refusal costs no upload
    parsing, decoding or preprocessing. The micro-batcher's queue limit stays behind it as the second line."""

    def __init__(self, app: ASGIApp, admission: Admission, routes: Sequence[BaseRoute], retry_after_s: int = 1):
        self.app = app
        self.admission = admission
        self.routes = list(routes)
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_api = scope["type"] == "http" and scope["path"].startswith(KEYED_PREFIX)
        route = match_route(self.routes, scope) if is_api else None
        # a method mismatch matches partially (the router answers 405): not admitted, whatever the endpoint
        full = route is not None and route.matches(scope)[0] is Match.FULL
        if not full or not is_admitted(route):
            await self.app(scope, receive, send)
            return
        if not self.admission.try_enter():
            scope["route"] = route
            refused = Overloaded(
                f"{self.admission.limit} scoring or enrolment requests are already being served; retry shortly",
                retry_after=self.retry_after_s,
            )
            await send_exception(send, refused, refusal_headers(scope, headers_of(refused)))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave()


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class ObserveRequests:
    """Request id (kept from the caller when safe, else a fresh uuid), metrics, access log, last-resort 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception(
                "unhandled error", extra={"fields": {"request_id": request_id, "path": scope.get("path")}}
            )
            if started:
                raise
            status = 500
            await send_error(
                send,
                500,
                "internal_error",
                f"internal error; quote request id {request_id} when reporting it",
                {REQUEST_ID_HEADER: request_id},
            )
        finally:
            seconds = time.perf_counter() - t0
            self.metrics.in_flight.dec()
            route = route_template(scope)
            self.metrics.observe_request(route, scope["method"], status, seconds)
            access_log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "key_name": state.get("key_name"),
                        "client": (scope.get("client") or ("", 0))[0],
                    }
                },
            )
