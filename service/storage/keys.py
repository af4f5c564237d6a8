"""API keys and scopes.

A key of scope `admin` or `verify` belongs to one collection and acts inside it only; a key of scope `operator`
belongs to none and manages collections (service/storage/collections.py) without seeing inside any. Names are unique
among a collection's active keys (operators': among active operator keys), so a name taken in another collection is
never refused, nor revealed. Keys live in the `api_keys` table (service/storage/schema.py) of the same database as
the gallery, so one database holds everything an operator must back up. Per-key rate limits are
service/api/ratelimit.py. Covered by tests/service/test_security.py (and the 401/403 paths by
tests/service/test_api_auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from service.errors import Conflict, Invalid, NotFound, Unauthorized, UnknownCollection
from service.storage.schema import ApiKey, CollectionRow

KEY_PREFIX = "bp_"
# Shown in listings so an operator can tell keys apart; 7 random characters out of 43 reveal nothing useful.
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 7
MAX_PRESENTED_KEY_LEN = 256
MIN_PRESENTED_KEY_LEN = 16  # the bootstrap admin key's minimum; issued keys are 46 characters
ANY_COLLECTION = "*"  # `revoke` and `list` by an operator (the CLI): whatever collection (never a collection id)


class Scope(StrEnum):
    verify = "verify"  # compare, verify, identify, in the key's collection
    admin = "admin"  # artists, works, keys, audit, and everything `verify` may do, in the key's collection
    operator = "operator"  # collections: create, list, delete, their first keys; nothing inside any


def scope_allows(have: Scope | str, need: Scope | str) -> bool:
    have, need = Scope(have), Scope(need)
    return have == need or (have == Scope.admin and need == Scope.verify)


@dataclass(frozen=True)
class KeyInfo:
    """What the rest of the service knows about a key: never the key itself, never its hash."""

    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    collection: str | None = None  # None: an operator key
    # when the key's collection was made (`authenticate` only): which collection of that id the key belongs to, so
    # a process can tell a collection deleted and made again elsewhere under the same id (Runtime.follow_collection)
    collection_created: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def of(cls, row: ApiKey, collection_created: datetime | None = None) -> KeyInfo:
        created = _aware(row.created_at)
        assert created is not None
        return cls(
            row.id,
            row.name,
            Scope(row.scope),
            row.prefix,
            created,
            _aware(row.revoked_at),
            row.collection_id,
            _aware(collection_created),
        )


def _aware(value: datetime | None) -> datetime | None:
    # SQLite drops tzinfo on the way back; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    """What listings show. Our keys: their first random characters. An operator-chosen key (the bootstrap admin
    key) may be a low-entropy phrase, so none of its characters are shown, only a few of its hash's."""
    if key.startswith(KEY_PREFIX) and len(key) >= 40:
        return key[:DISPLAY_PREFIX_LEN]
    return "env:" + hash_key(key)[:6]


def hash_key(key: str) -> str:
    # A fast unsalted hash is the right tool here: keys carry 256 bits from `secrets`, so there is no dictionary
    # to attack and no need for a slow password KDF; a deterministic hash also lets us look the key up by index.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """CRUD over `api_keys` plus authentication. Thread-safe: every call opens its own short session."""

    def __init__(self, bind: sa.Engine):
        self.bind = bind
        self._sessions = sessionmaker(bind, expire_on_commit=False)

    def create(self, name: str, scope: Scope | str, collection: str | None) -> tuple[KeyInfo, str]:
        """Issue a new key in `collection` (None for an operator key). Returns its info and the plaintext key,
        which is never retrievable again."""
        scope = key_scope(scope)
        name = key_name(name)
        key = generate_key()
        with self._sessions.begin() as s:
            _check_collection(s, scope, collection)
            if self._active_by_name(s, name, collection) is not None:
                raise Conflict("key_name_taken", f"an active key named {name!r} already exists")
            row = ApiKey(
                name=name,
                prefix=display_prefix(key),
                key_hash=hash_key(key),
                scope=scope.value,
                created_at=_now(),
                collection_id=collection,
            )
            s.add(row)
            s.flush()
            return KeyInfo.of(row), key

    def ensure(self, name: str, key: str, scope: Scope | str, collection: str | None) -> KeyInfo:
        """Make `key` an active key named `name` in `collection` (idempotent; used for BRUSHPRINT_ADMIN_KEY and
        BRUSHPRINT_OPERATOR_KEY at start).

        A different active key under the same name is revoked, so changing the environment variable rotates the
        bootstrap key. A bootstrap key that an operator revoked stays revoked.
        """
        scope, name, digest = key_scope(scope), key_name(name), hash_key(key)
        try:
            return self._ensure(name, key, scope, digest, collection)
        except sa.exc.IntegrityError:
            # replicas starting together with the same key: another one inserted it first, so now it is found
            return self._ensure(name, key, scope, digest, collection)

    def _ensure(self, name: str, key: str, scope: Scope, digest: str, collection: str | None) -> KeyInfo:
        with self._sessions.begin() as s:
            row = s.scalars(sa.select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
            if row is not None:
                return KeyInfo.of(row)
            _check_collection(s, scope, collection)
            old = self._active_by_name(s, name, collection)
            if old is not None:
                old.revoked_at = _now()
            row = ApiKey(
                name=name,
                prefix=display_prefix(key),
                key_hash=digest,
                scope=scope.value,
                created_at=_now(),
                collection_id=collection,
            )
            s.add(row)
            s.flush()
            return KeyInfo.of(row)

    def list(self, collection: str | None, include_revoked: bool = True) -> list[KeyInfo]:
        """The keys of `collection` (None: operator keys; `ANY_COLLECTION`: every key, for the operator's CLI)."""
        with self._sessions() as s:
            q = sa.select(ApiKey).order_by(ApiKey.id)
            if collection != ANY_COLLECTION:
                q = q.where(_in(collection))
            if not include_revoked:
                q = q.where(ApiKey.revoked_at.is_(None))
            return [KeyInfo.of(r) for r in s.scalars(q)]

    def revoke(self, ref: str | int, collection: str | None) -> KeyInfo:
        """Revoke by id or by name (the active key of that name) among the keys of `collection` (None: operator
        keys; `ANY_COLLECTION`: by id, any key). A key of another collection is as unknown as one that never
        existed. Revoking twice is harmless."""
        if isinstance(ref, str) and "\x00" in ref:
            # no stored name holds NUL, and PostgreSQL would fail the query instead of finding nothing
            raise NotFound("unknown_key", f"no active key with id or name {ref!r}")
        with self._sessions.begin() as s:
            row = None
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18):
                row = s.get(ApiKey, int(ref))
                if row is not None and collection != ANY_COLLECTION and row.collection_id != collection:
                    row = None
            if row is None and isinstance(ref, str) and collection != ANY_COLLECTION:
                row = self._active_by_name(s, ref, collection)
            if row is None:
                raise NotFound("unknown_key", f"no active key with id or name {ref!r}")
            if row.revoked_at is None:
                row.revoked_at = _now()
            return KeyInfo.of(row)

    def authenticate(self, presented: str | None) -> KeyInfo:
        """The active key matching `presented`, else `Unauthorized`. Revoked keys are simply invalid."""
        if not presented:
            raise Unauthorized("missing_api_key", "send your API key in the X-API-Key header")
        if not MIN_PRESENTED_KEY_LEN <= len(presented) <= MAX_PRESENTED_KEY_LEN:
            raise _invalid()
        digest = hash_key(presented)
        with self._sessions() as s:
            found = s.execute(
                sa.select(ApiKey, CollectionRow.created)
                .outerjoin(CollectionRow, CollectionRow.id == ApiKey.collection_id)
                .where(ApiKey.key_hash == digest)
            ).one_or_none()
        row, collection_created = (None, None) if found is None else found
        # The index lookup already matched; compare_digest keeps the final check free of early-exit timing.
        if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
            raise _invalid()
        return KeyInfo.of(row, collection_created)

    @staticmethod
    def _active_by_name(s, name: str, collection: str | None) -> ApiKey | None:
        q = sa.select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None), _in(collection))
        return s.scalars(q).first()


def _in(collection: str | None):  # type: ignore[no-untyped-def]
    return ApiKey.collection_id.is_(None) if collection is None else ApiKey.collection_id == collection


def _check_collection(s, scope: Scope, collection: str | None) -> None:  # type: ignore[no-untyped-def]
    """An operator key belongs to no collection; every other key to one that exists."""
    if (scope == Scope.operator) != (collection is None):
        raise Invalid("invalid_request", "an operator key belongs to no collection; admin and verify keys to one")
    if collection is not None and s.get(CollectionRow, collection) is None:
        raise UnknownCollection(collection)


def _invalid() -> Unauthorized:
    return Unauthorized("invalid_api_key", "the API key is not valid (unknown or revoked)")


def _now() -> datetime:
    return datetime.now(UTC)


def key_scope(scope: Scope | str) -> Scope:
    try:
        return Scope(scope)
    except ValueError:
        raise Invalid("invalid_request", f"scope must be one of {[s.value for s in Scope]}") from None


def key_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64 or "\x00" in name:
        raise Invalid("invalid_request", "key name must be 1 to 64 characters, none of them NUL")
    return name
