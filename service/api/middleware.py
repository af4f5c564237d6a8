"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks streaming): request-size limit, and one
layer that gives every request an id, times it for Prometheus, writes the access log and turns any unexpected
exception into a 500 `internal_error` without a traceback in the body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import UNMATCHED_ROUTE, Metrics

access_log = logging.getLogger("service.access")
error_log = logging.getLogger("service.errors")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


async def send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length grows past the limit.

    A FastAPI HTTPException on purpose: FastAPI re-raises those from body parsing (anything else would become a
    400), and the app's HTTPException handler renders it as 413 `request_too_large`.
    """

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


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
                await send_error(send, 400, "invalid_request", "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                # Connection: close, since the unread body is still on the socket.
                await send_error(
                    send,
                    413,
                    "request_too_large",
                    f"the request body is {declared} bytes; the limit is {self.max_bytes}",
                    {"Connection": "close"},
                )
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
            await send_error(send, 413, "request_too_large", str(e.detail), {"Connection": "close"})


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
