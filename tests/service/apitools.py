"""Helpers for the HTTP tests (tests/service/test_api_*.py): settings for a test app, keys, hostile uploads."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from tests.service.conftest import encode, painting, png

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
OPERATOR_KEY = "test-operator-key-0123456789abcdef"
OPERATOR = {"X-API-Key": OPERATOR_KEY}


def make_settings(model_dir: Path, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "data_dir": data_dir,
        "admin_key": ADMIN_KEY,
        "operator_key": OPERATOR_KEY,
        "providers": "cpu",
        "batch_max_wait_ms": 2.0,
        # most tests make many calls with one key; the limiter has its own tests
        "rate_limit_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running(model_dir: Path, data_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    """A started app (lifespan run) and a client for it."""
    app = create_app(make_settings(model_dir, data_dir, **overrides))
    with TestClient(app) as client:
        yield client


def new_key(client: TestClient, name: str, scope: str) -> str:
    r = client.post("/v1/keys", json={"name": name, "scope": scope}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["key"]


def pair(seed_a: int, seed_b: int) -> dict[str, tuple[str, bytes, str]]:
    return {"image_a": ("a.png", png(seed_a), "image/png"), "image_b": ("b.png", png(seed_b), "image/png")}


def one(seed: int, name: str = "q.png") -> dict[str, tuple[str, bytes, str]]:
    return {"image": (name, png(seed), "image/png")}


def enrol(client: TestClient, artist_id: str, seeds: list[int], name: str | None = None) -> list[dict]:
    r = client.post("/v1/artists", json={"id": artist_id, "name": name or artist_id.title()}, headers=ADMIN)
    assert r.status_code == 201, r.text
    files = [("image", (f"{artist_id}-{s}.png", png(s), "image/png")) for s in seeds]
    r = client.post(f"/v1/artists/{artist_id}/works", files=files, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["works"]


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


# ---- hostile uploads --------------------------------------------------------------------------------------
def truncated_jpeg() -> bytes:
    data = encode(painting(11, (64, 64)), "JPEG", quality=90)
    return data[: len(data) // 2]


def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit side×side PNG: a few kB on the wire, side² pixels once decoded (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [painting(s, (40, 40)).convert("P") for s in (21, 22, 23)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()
