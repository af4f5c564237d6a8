"""Collections: one dealer's share of a deployment (service/storage/schema.py `CollectionRow`).

Only an operator (scope `operator`, or the CLI) names collections: creates one with its quota, lists them with
what each holds, deletes one with everything in it — its artists, works and their embeddings, keys and decision
log, and the originals no other work points at — in one transaction. Everyone else acts inside the collection of
their key and never sees this module. A deleted collection's id may be used again; the versions it is stamped with
come from the deployment-wide counter, so no process mistakes the new collection for the old one's index.
Covered by tests/service/test_store.py, tests/service/test_cli.py and tests/reliability/test_isolation.py.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from service.errors import Conflict, Invalid, UnknownCollection
from service.storage.db import make_sessionmaker
from service.storage.keys import KeyInfo, KeyStore, Scope
from service.storage.keys import key_name as check_key_name
from service.storage.originals import OriginalStore
from service.storage.schema import AUDIT, ApiKey, ArtistRow, CollectionRow, EmbeddingRow, WorkRow
from service.storage.store import Store, storable

COLLECTION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_QUOTA = 2**62


@dataclass(frozen=True)
class Collection:
    id: str
    name: str
    max_works: int | None
    max_bytes: int | None
    created: datetime
    artists: int = 0
    works: int = 0
    bytes: int = 0
    keys: int = 0  # active keys


def check_id(collection_id: object) -> str:
    if not isinstance(collection_id, str) or not COLLECTION_ID_RE.fullmatch(collection_id):
        raise Invalid(
            "invalid_collection_id",
            "a collection id is 1–64 characters of lower-case letters, digits, '_', '.', '-', starting with a "
            "letter or digit",
        )
    return collection_id


def _quota(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA:
        raise Invalid("invalid_quota", f"{what} must be a whole number from 0 to {MAX_QUOTA}, or null for no limit")
    return value


def collection_fields(
    collection_id: object, name: object, max_works: object, max_bytes: object
) -> tuple[str, str, int | None, int | None]:
    """(id, name, max_works, max_bytes) as a collection is stored (a name of None: the id), or `Invalid` naming the
    first field refused. The one check of a collection: `create` and an archive's restore (service/ops/backup.py)."""
    check_id(collection_id)
    assert isinstance(collection_id, str)
    name = collection_id if name is None else name
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or not storable(name):
        raise Invalid("invalid_name", "name must be a non-empty string of at most 256 characters")
    return collection_id, name.strip(), _quota(max_works, "max_works"), _quota(max_bytes, "max_bytes")


class Collections:
    def __init__(self, db: sa.Engine, data_dir: str | Path):
        self.db = db
        self.store = Store(db)
        self.originals = OriginalStore(Path(data_dir))
        self._sessions = make_sessionmaker(db)

    def create(
        self, collection_id: str, name: str | None = None, max_works: int | None = None, max_bytes: int | None = None
    ) -> Collection:
        collection_id, name, *quotas = collection_fields(collection_id, name, max_works, max_bytes)
        exists = Conflict("collection_exists", f"collection {collection_id!r} already exists")
        try:
            with self.store.write() as s:  # stamped with the deployment's newest version, like every write
                if s.get(CollectionRow, collection_id) is not None:
                    raise exists
                version = self.store.version_in(s)
                s.add(
                    CollectionRow(
                        id=collection_id, name=name, max_works=quotas[0], max_bytes=quotas[1], version=version
                    )
                )
        except IntegrityError as e:
            raise exists from e
        return self.get(collection_id)

    def create_with_key(
        self,
        keys: KeyStore,
        collection_id: str,
        name: str | None = None,
        max_works: int | None = None,
        max_bytes: int | None = None,
        key_name: str = "admin",
    ) -> tuple[Collection, KeyInfo, str]:
        """A new collection and its first key (scope admin, named `key_name`): (collection, key info, the key,
        shown this once). A key name that is refused is refused before the collection is made."""
        key_name = check_key_name(key_name)
        collection = self.create(collection_id, name, max_works, max_bytes)
        info, key = keys.create(key_name, Scope.admin, collection.id)
        return self.get(collection.id), info, key

    def ensure(self, collection_id: str) -> None:
        """The collection exists afterwards (the bootstrap admin key's, at start)."""
        try:
            self.get(collection_id)
        except UnknownCollection:
            with contextlib.suppress(Conflict):  # another process starting at the same time made it
                self.create(collection_id)

    def get(self, collection_id: str) -> Collection:
        found = self._usage([collection_id]) if storable(collection_id) else []
        if not found:
            raise UnknownCollection(collection_id)
        return found[0]

    def listing(self) -> list[Collection]:
        return self._usage(None)

    def _usage(self, ids: list[str] | None) -> list[Collection]:
        works = (
            sa.select(
                WorkRow.collection_id,
                sa.func.count(WorkRow.id).label("n"),
                sa.func.coalesce(sa.func.sum(WorkRow.size_bytes), 0).label("size"),
            )
            .group_by(WorkRow.collection_id)
            .subquery()
        )
        artists = (
            sa.select(ArtistRow.collection_id, sa.func.count(ArtistRow.id).label("n"))
            .group_by(ArtistRow.collection_id)
            .subquery()
        )
        keys = (
            sa.select(ApiKey.collection_id, sa.func.count(ApiKey.id).label("n"))
            .where(ApiKey.revoked_at.is_(None))
            .group_by(ApiKey.collection_id)
            .subquery()
        )
        q = (
            sa.select(
                CollectionRow,
                sa.func.coalesce(artists.c.n, 0),
                sa.func.coalesce(works.c.n, 0),
                sa.func.coalesce(works.c.size, 0),
                sa.func.coalesce(keys.c.n, 0),
            )
            .outerjoin(artists, artists.c.collection_id == CollectionRow.id)
            .outerjoin(works, works.c.collection_id == CollectionRow.id)
            .outerjoin(keys, keys.c.collection_id == CollectionRow.id)
            .order_by(CollectionRow.created, CollectionRow.id)
        )
        if ids is not None:
            q = q.where(CollectionRow.id.in_(ids))
        with self._sessions() as s:
            return [
                Collection(c.id, c.name, c.max_works, c.max_bytes, c.created, int(a), int(w), int(b), int(k))
                for c, a, w, b, k in s.execute(q).all()
            ]

    def delete(self, collection_id: str) -> Collection:
        """Delete the collection and everything in it, in one transaction; then the originals no work points at.
        Returns what it held."""
        held = self.get(collection_id)
        with self.store.write(collection_id) as s:
            works = s.execute(sa.select(WorkRow.id, WorkRow.path).where(WorkRow.collection_id == collection_id)).all()
            ids = [w.id for w in works]
            # explicit deletes, children first: correct whether or not the backend enforces ON DELETE CASCADE
            for start in range(0, len(ids), 500):
                s.execute(sa.delete(EmbeddingRow).where(EmbeddingRow.work_id.in_(ids[start : start + 500])))
            s.execute(sa.delete(WorkRow).where(WorkRow.collection_id == collection_id))
            s.execute(sa.delete(ArtistRow).where(ArtistRow.collection_id == collection_id))
            s.execute(sa.delete(ApiKey).where(ApiKey.collection_id == collection_id))
            s.execute(AUDIT.delete().where(AUDIT.c.collection_id == collection_id))
            s.execute(sa.delete(CollectionRow).where(CollectionRow.id == collection_id))
        for rel in self.store.unreferenced([w.path for w in works]):
            self.originals.remove(rel)
        return held
