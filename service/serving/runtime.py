"""One serving process's model side, assembled: the database, the bundle factory and the slot holding the
serving bundle (service/serving/bundle.py), the embedder (decode, quality, micro-batcher) and the two faces the
routes call, each for one collection — `scorer_for(collection)` (compare, verify, identify:
service/serving/scorer.py) and `portfolios_for(collection)` (artists and works: service/serving/portfolios.py);
`scorer` and `portfolios` act for `default` — plus what operations need: `collections` (the operator's:
service/storage/collections.py), `delete_collection`, `reindex`, `rebuild`, `ready`.

`Runtime.from_settings` opens the database (migrated to the current schema, service/storage/db.py) and loads
`settings.model_dir`; `Runtime.build(model, settings)` wraps an already loaded model (tests and tools share
one). Lifespan: `await start()`, `await stop()`, `close()`. Covered by tests/service/test_engine.py and
tests/service/test_bundle.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine as SqlEngine

from service.config import Settings
from service.serving.bundle import Bundle, BundleFactory, BundleSlot
from service.serving.embedder import Embedder
from service.serving.model import Model
from service.serving.portfolios import Portfolios
from service.serving.scorer import Scorer
from service.storage.collections import Collection, Collections
from service.storage.db import open_database
from service.storage.gallery import ReindexResult, reindex
from service.storage.originals import OriginalStore
from service.storage.schema import DEFAULT_COLLECTION

log = logging.getLogger(__name__)

OnBatch = Callable[[int, float], None]


class Runtime:
    def __init__(
        self, settings: Settings, db: SqlEngine, factory: BundleFactory, first: Bundle, on_batch: OnBatch | None
    ):
        # what depends on the providers the model really runs on (batch_max_size when unset) is settled here,
        # once, before the embedder, the scorer and the portfolios read it
        settings = settings.for_providers(first.model.providers)
        factory.settings = settings
        self.settings = settings
        self.db = db
        self.factory = factory
        self.bundles = BundleSlot(first)
        self.embedder = Embedder(settings, on_batch)
        self.collections = Collections(db, settings.data_dir)
        self._made: dict[str, datetime] = {}  # collection id → when the collection this process serves was made
        self._made_lock = threading.Lock()
        self.scorer = self.scorer_for(DEFAULT_COLLECTION)
        self.portfolios = self.portfolios_for(DEFAULT_COLLECTION)

    def scorer_for(self, collection: str) -> Scorer:
        """Compare, verify and identify inside `collection` (a key's; nothing of another collection is reached)."""
        return Scorer(self.bundles, self.embedder, self.settings, collection)

    def portfolios_for(self, collection: str) -> Portfolios:
        """Artists and works of `collection`."""
        return Portfolios(self.bundles, self.embedder, self.settings, collection)

    def delete_collection(self, collection: str) -> Collection:
        """Delete a collection and everything in it (service/storage/collections.py), and its view here."""
        held = self.collections.delete(collection)
        self.bundles.current.forget(collection)
        return held

    def follow_collection(self, collection: str, created: datetime | None) -> None:
        """Before a request acts in `collection`, made at `created` (its key's, `KeyInfo.collection_created`): if
        this process served a collection of that id made at another time — deleted and made again by another
        process, a replica behind the same proxy — its view and cached pictures here are dropped first, as
        `delete_collection` drops them where the delete ran. So no reply of the new collection comes from the
        old one's embedding cache, and its speed tells nothing of what the old one's dealer sent."""
        if created is None:
            return
        with self._made_lock:
            seen = self._made.setdefault(collection, created)
            if seen == created:
                return
            self._made[collection] = created
        log.info("collection %s was made again elsewhere: its view and cached pictures here are dropped", collection)
        self.bundles.current.forget(collection)

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings, on_batch: OnBatch | None = None) -> Runtime:
        """The server's runtime: the database migrated (or checked, service/storage/db.py) and
        `settings.model_dir` loaded."""
        return cls._around(settings, lambda factory: factory.load(settings.model_dir), on_batch)

    @classmethod
    def build(cls, model: Model, settings: Settings, on_batch: OnBatch | None = None) -> Runtime:
        """A runtime around an already loaded model (tests and tools share one model between runtimes)."""
        return cls._around(settings, lambda factory: factory(model), on_batch)

    @classmethod
    def _around(cls, settings: Settings, first: Callable[[BundleFactory], Bundle], on_batch: OnBatch | None) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        assert settings.database_url is not None  # Settings fills it in (a SQLite file in data_dir)
        db = open_database(settings.database_url, settings.migrate_on_start)
        try:
            factory = BundleFactory(db, settings)
            return cls(settings, db, factory, first(factory), on_batch)
        except BaseException:
            db.dispose()
            raise

    async def start(self) -> None:
        await self.embedder.start()

    async def stop(self) -> None:
        await self.embedder.stop()

    def close(self) -> None:
        self.embedder.close()
        self.db.dispose()

    # ---- the serving bundle ---------------------------------------------------------------------------------
    @property
    def bundle(self) -> Bundle:
        """The bundle serving now. A caller doing more than one thing with it keeps this one reference."""
        return self.bundles.current

    @property
    def model_id(self) -> str:
        return self.bundles.current.model_id

    def rebuild(self) -> Bundle:
        """Swap in a freshly built bundle of the serving model (its gallery reloaded from the store, its
        calibrator new); returns it."""
        fresh = self.factory(self.bundles.current.model)
        self.bundles.swap(fresh)
        return fresh

    def reindex(
        self, prune: bool = False, on_progress: Callable[[int], None] | None = None, announce: bool = True
    ) -> ReindexResult:
        """Re-embed every work lacking an embedding of the serving model from its original (synchronous; the CLI
        runs it), then serve a bundle built around the result. `on_progress(n)` hears of each batch of n
        originals; `announce=False` as in `Gallery.reindex` (a model nobody serves yet)."""
        b = self.bundles.current

        def embed_many(datas: list[bytes]) -> list[np.ndarray | Exception]:
            out = self.embedder.embed_many(b, datas)
            if on_progress is not None:
                on_progress(len(datas))
            return out

        originals = OriginalStore(self.settings.data_dir)
        batch = self.settings.batch_max_size
        result = reindex(b.store, originals, b.model_id, embed_many, batch=batch, prune=prune, announce=announce)
        self.rebuild()
        return result

    def missing(self) -> int:
        """Works of any collection without an embedding of the serving model."""
        b = self.bundles.current
        return b.store.count_missing(b.model_id)

    def ready(self) -> dict[str, Any]:
        """The deployment's readiness; `references` (this process's, every collection's) and
        `works_missing_embedding` (anywhere) are deployment-wide figures for operators only."""
        b = self.bundles.current
        try:
            store = b.store.ping()
        except Exception:
            log.exception("runtime: store unreachable")
            store = False
        missing = 0
        if store:
            b.sync()  # a reindex run beside the server shows here without a restart
            missing = self.missing()
        status = "ok" if store else "store_unreachable"
        if store and missing:
            status = "reindex_required"
        return {
            "ready": store,
            "status": status,
            "model": b.model_id,
            "providers": list(b.model.providers),
            "batch_max_size": self.embedder.batcher.max_batch,
            "store": store,
            "references": sum(len(v.gallery) for v in b.views()),
            "works_missing_embedding": missing,
            "reindex_required": bool(missing),
            "queue_depth": self.embedder.queue_depth,
        }
