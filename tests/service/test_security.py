"""Unit tests of service/storage/keys.py: key issue / hash / lookup / revoke / bootstrap, scopes, token bucket."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.api.errors import headers_of, status_of
from service.api.ratelimit import RateLimiter
from service.errors import ServiceError
from service.storage.db import open_database
from service.storage.keys import (
    DISPLAY_PREFIX_LEN,
    KeyStore,
    Scope,
    generate_key,
    hash_key,
    scope_allows,
)


@pytest.fixture
def db(tmp_path: Path) -> sa.Engine:
    return open_database(f"sqlite:///{tmp_path / 'keys.db'}")


@pytest.fixture
def store(db: sa.Engine) -> KeyStore:
    return KeyStore(db)


def test_generated_keys_are_random_and_prefixed() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("bp_") and len(k) == 3 + 43 for k in keys)


def test_hash_is_sha256_hex() -> None:
    assert hash_key("bp_abc") == hashlib.sha256(b"bp_abc").hexdigest()


def test_only_the_hash_is_stored(store: KeyStore, db: sa.Engine) -> None:
    info, key = store.create("dealer", "verify", "default")
    with db.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    flat = " ".join(str(v) for row in stored for v in row)
    assert key not in flat
    assert hash_key(key) in flat
    assert info.prefix == key[:DISPLAY_PREFIX_LEN] and len(info.prefix) == 10


def test_authenticate(store: KeyStore) -> None:
    info, key = store.create("dealer", Scope.verify, "default")
    got = store.authenticate(key)
    assert (got.id, got.name, got.scope) == (info.id, "dealer", Scope.verify)
    for presented, code in [
        (None, "missing_api_key"),
        ("", "missing_api_key"),
        (key[:-1], "invalid_api_key"),
        (key + "x", "invalid_api_key"),
        ("bp_" + "A" * 43, "invalid_api_key"),
        ("x" * 10_000, "invalid_api_key"),
    ]:
        with pytest.raises(ServiceError) as e:
            store.authenticate(presented)
        assert (status_of(e.value), e.value.code) == (401, code)


def test_final_check_is_constant_time() -> None:
    # a timing oracle on how much of a key matched needs a data-dependent early exit; there is none
    source = inspect.getsource(KeyStore.authenticate)
    assert "hmac.compare_digest" in source and "==" not in source.split("compare_digest")[1].split("\n")[0]


def test_revoke_by_name_and_id(store: KeyStore) -> None:
    a, key_a = store.create("a", "admin", "default")
    b, key_b = store.create("b", "verify", "default")
    assert store.revoke("a", "default").revoked_at is not None
    assert store.revoke(b.id, "default").name == "b"
    for key in (key_a, key_b):
        with pytest.raises(ServiceError) as e:
            store.authenticate(key)
        assert e.value.code == "invalid_api_key"
    assert store.revoke(str(b.id), "default").revoked_at is not None  # twice is harmless
    with pytest.raises(ServiceError) as e:
        store.revoke("a", "default")  # no *active* key of that name any more
    assert (status_of(e.value), e.value.code) == (404, "unknown_key")
    assert [k.active for k in store.list("default")] == [False, False]
    assert store.list("default", include_revoked=False) == []


def test_names_are_unique_among_active_keys(store: KeyStore) -> None:
    store.create("dealer", "verify", "default")
    with pytest.raises(ServiceError) as e:
        store.create("dealer", "admin", "default")
    assert (status_of(e.value), e.value.code) == (409, "key_name_taken")
    store.revoke("dealer", "default")
    info, _ = store.create("dealer", "admin", "default")
    assert info.scope == Scope.admin


def test_bad_scope_or_name(store: KeyStore) -> None:
    for name, scope in [("x", "root"), ("", "verify"), ("y" * 65, "verify")]:
        with pytest.raises(ServiceError) as e:
            store.create(name, scope, "default")
        assert status_of(e.value) == 422


def test_ensure_bootstraps_idempotently_and_rotates(store: KeyStore) -> None:
    first = store.ensure("bootstrap-admin", "operator-chosen-secret-1", "admin", "default")
    assert first.prefix.startswith("env:") and "operator" not in first.prefix  # chosen keys show no characters
    again = store.ensure("bootstrap-admin", "operator-chosen-secret-1", "admin", "default")
    assert first.id == again.id and first.scope == Scope.admin
    assert len(store.list("default")) == 1
    assert store.authenticate("operator-chosen-secret-1").id == first.id
    # a new value under the same name replaces the old key
    rotated = store.ensure("bootstrap-admin", "operator-chosen-secret-2", "admin", "default")
    assert rotated.id != first.id
    with pytest.raises(ServiceError):
        store.authenticate("operator-chosen-secret-1")
    # an operator's revocation sticks across restarts
    store.revoke(rotated.id, "default")
    assert store.ensure("bootstrap-admin", "operator-chosen-secret-2", "admin", "default").revoked_at is not None
    with pytest.raises(ServiceError):
        store.authenticate("operator-chosen-secret-2")


def test_keys_share_the_gallery_database(db: sa.Engine, store: KeyStore) -> None:
    from service.storage.schema import Base

    assert {"api_keys", "audit", "artists", "works"} <= set(sa.inspect(db).get_table_names())
    assert Base.metadata.tables["api_keys"] is not None


def test_scopes() -> None:
    assert scope_allows(Scope.admin, Scope.verify) and scope_allows("admin", "admin")
    assert scope_allows("verify", "verify") and not scope_allows("verify", "admin")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)  # one token per second
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(1.0)
    assert limiter.acquire("other") == 0.0  # per key
    clock.t += 0.5
    assert limiter.acquire("k") == pytest.approx(0.5)
    clock.t += 0.5
    assert limiter.acquire("k") == 0.0
    clock.t += 3600
    assert [limiter.acquire("k") for _ in range(4)][-1] > 0  # refills up to the burst only


def test_check_raises_429_with_whole_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=2, burst=1, clock=clock)  # one token per 30 s
    limiter.check("k")
    with pytest.raises(ServiceError) as e:
        limiter.check("k")
    assert (status_of(e.value), e.value.code, headers_of(e.value)) == (429, "rate_limited", {"Retry-After": "30"})


def test_zero_rate_disables_the_limiter() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.acquire("k") == 0.0 for _ in range(1000))
