"""Exceptions: one class per HTTP status the API documents, each carrying the API's stable error `code`."""

from __future__ import annotations

import httpx


class BrushprintError(Exception):
    """An error answer of the API: `status`, the stable `code` (e.g. `unknown_artist`), the human `message`,
    `retry_after` seconds when the API sent `Retry-After`, and the `request_id` to quote in a bug report."""

    status: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        request_id: str | None = None,
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id


class TransportFailed(BrushprintError):
    """No answer: the connection failed or timed out (status 0, code `transport_error`)."""


class BadRequest(BrushprintError):  # 400: malformed_body, conflicting_strictness
    pass


class Unauthorized(BrushprintError):  # 401: missing_api_key, invalid_api_key
    pass


class Forbidden(BrushprintError):  # 403: insufficient_scope
    pass


class NotFound(BrushprintError):  # 404
    pass


class UnknownArtist(NotFound):  # 404 unknown_artist
    pass


class UnknownWork(NotFound):  # 404 unknown_work
    pass


class Conflict(BrushprintError):  # 409: artist_exists, duplicate_work, empty_portfolio, …
    pass


class PayloadTooLarge(BrushprintError):  # 413
    pass


class UnsupportedMedia(BrushprintError):  # 415: unsupported_format, animated_image
    pass


class Unprocessable(BrushprintError):  # 422: invalid_request, corrupt_image, invalid_evidence, …
    pass


class RateLimited(BrushprintError):  # 429 rate_limited
    pass


class Overloaded(BrushprintError):  # 503 overloaded / not_ready
    pass


class ServerError(BrushprintError):  # any other 5xx: a bug in the service
    pass


_BY_STATUS: dict[int, type[BrushprintError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMedia,
    422: Unprocessable,
    429: RateLimited,
    503: Overloaded,
}
_BY_CODE: dict[str, type[BrushprintError]] = {"unknown_artist": UnknownArtist, "unknown_work": UnknownWork}


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the API never sends one


def error_from(response: httpx.Response) -> BrushprintError:
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = response.json()
        code, message = str(body["error"]["code"]), str(body["error"]["message"])
    except Exception:
        pass  # not the API's envelope (a proxy in between?): keep the status line
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else BrushprintError
    return cls(response.status_code, code, message, retry_after(response), response.headers.get("X-Request-ID"))
