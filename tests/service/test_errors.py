"""service/errors.py + service/api/errors.py: domain exceptions, the one status table, the one error body — the
same bytes from an exception handler and from an ASGI middleware."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from contract.decode import ImageError, ImageTooLarge, InvalidImage, UnsupportedImage
from service.api.errors import STATUS, error_body, error_response, headers_of, install, send_error, status_of
from service.errors import (
    BadRequest,
    Conflict,
    DuplicateWork,
    Forbidden,
    Invalid,
    ModelSwitching,
    NoFiles,
    NotFound,
    Overloaded,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownArtist,
    UnknownWork,
)
from service.serving.batching import Overloaded as BatcherOverloaded

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (BadRequest("conflicting_strictness", "m"), 400),
        (Unauthorized("missing_api_key", "m"), 401),
        (Forbidden("insufficient_scope", "m"), 403),
        (NotFound("unknown_key", "m"), 404),
        (Conflict("artist_exists", "m"), 409),
        (TooLarge("too_many_files", "m"), 413),
        (Invalid("invalid_k", "m"), 422),
        (RateLimited("rate_limited", "m", retry_after=3), 429),
        (Unavailable("not_ready", "m"), 503),
        (UnknownArtist("monet"), 404),
        (UnknownWork("monet", "w1"), 404),
        (DuplicateWork("twice"), 409),
        (NoFiles(), 422),
        (Overloaded("busy"), 503),
        (UnsupportedImage("unsupported_format", "m"), 415),
        (ImageTooLarge("image_too_many_pixels", "m"), 413),
        (InvalidImage("corrupt_image", "m").about("a.png"), 422),
        (ValueError("a bug"), 500),
    ],
)
def test_each_kind_has_one_status(exc: Exception, status: int) -> None:
    assert status_of(exc) == status


def test_named_errors_carry_their_code() -> None:
    assert (UnknownArtist("monet").code, UnknownArtist("monet").message) == (
        "unknown_artist",
        "no artist with id 'monet'",
    )
    assert UnknownWork("monet", "w1").code == "unknown_work" and "w1" in UnknownWork("monet", "w1").message
    assert (NoFiles().code, DuplicateWork("x").code, Overloaded().code) == ("no_files", "duplicate_work", "overloaded")
    assert BatcherOverloaded is Overloaded  # the batcher's queue-full error is the service's one 503
    # the service's own kinds and the contract's image errors, nothing else
    assert all(issubclass(cls, ServiceError | ImageError) for cls in STATUS)


def test_overloaded_maps_to_503() -> None:
    err = Overloaded("busy", retry_after=2.4)
    # whole seconds, rounded up: a client that waits Retry-After never comes back too early
    assert (status_of(err), err.code, headers_of(err)) == (503, "overloaded", {"Retry-After": "3"})
    assert headers_of(Overloaded("busy", retry_after=0.2)) == {"Retry-After": "1"}
    assert headers_of(RateLimited("rate_limited", "m", retry_after=30)) == {"Retry-After": "30"}
    assert headers_of(NotFound("unknown_key", "m")) == {}


def test_model_switching_maps_to_503_with_retry_after() -> None:
    err = ModelSwitching("pbn@2")
    assert (status_of(err), err.code, headers_of(err)) == (503, "model_switching", {"Retry-After": "1"})
    assert "pbn@2" in err.message


async def test_middleware_and_handler_write_the_same_body() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_error(send, 409, "artist_exists", "artist 'é' already exists", {"X-Extra": "1"})
    start, body = sent
    assert start["status"] == 409
    assert (b"content-type", b"application/json") in start["headers"] and (b"x-extra", b"1") in start["headers"]
    response = error_response(409, "artist_exists", "artist 'é' already exists")
    assert body["body"] == response.body == error_body("artist_exists", "artist 'é' already exists")
    assert json.loads(body["body"]) == {"error": {"code": "artist_exists", "message": "artist 'é' already exists"}}


def test_install_answers_every_mapped_exception() -> None:
    app = FastAPI()
    install(app)
    raised: dict[str, Exception] = {
        "artist": UnknownArtist("monet"),
        "busy": Overloaded("queue full", retry_after=1.5),
        "image": ImageTooLarge("image_too_many_pixels", "too many"),
        "bug": RuntimeError("secret"),
    }

    @app.get("/{what}")
    def boom(what: str) -> None:
        raise raised[what]

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/artist")
    assert r.status_code == 404 and r.json() == {
        "error": {"code": "unknown_artist", "message": "no artist with id 'monet'"}
    }
    r = client.get("/busy")
    assert (r.status_code, r.json()["error"]["code"], r.headers["Retry-After"]) == (503, "overloaded", "2")
    r = client.get("/image")
    assert (r.status_code, r.json()["error"]["code"]) == (413, "image_too_many_pixels")
    r = client.get("/bug")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error" and "secret" not in r.text
