"""One serving process's model side, assembled: the database, the bundle factory and the slot holding the
serving bundle (service/serving/bundle.py), the embedder (decode, quality, micro-batcher) and the two faces the
routes call — `scorer` (compare, verify, identify: service/serving/scorer.py) and `portfolios` (artists and works:
service/serving/portfolios.py) — plus what operations need: `reindex`, `rebuild`, `ready`.

`Runtime.from_settings` opens the database (migrated to the current schema, service/storage/db.py) and loads
`settings.model_dir`; `Runtime.build(model, settings)` wraps an already loaded model (tests and tools share
one). Lifespan: `await start()`, `await stop()`, `close()`. Covered by tests/service/test_engine.py and
tests/service/test_bundle.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Engine as SqlEngine

from service.config import Settings
from service.serving.bundle import Bundle, BundleFactory, BundleSlot
from service.serving.embedder import Embedder
from service.serving.model import Model
from service.serving.portfolios import Portfolios
from service.serving.scorer import Scorer
from service.storage.db import open_database
from service.storage.gallery import ReindexResult

OnBatch = Callable[[int, float], None]


class Runtime:
    def __init__(
        self, settings: Settings, db: SqlEngine, factory: BundleFactory, first: Bundle, on_batch: OnBatch | None
    ):
        self.settings = settings
        self.db = db
        self.factory = factory
        self.bundles = BundleSlot(first)
        self.embedder = Embedder(settings, on_batch)
        self.scorer = Scorer(self.bundles, self.embedder, settings)
        self.portfolios = Portfolios(self.bundles, self.embedder, settings)

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

        result = b.gallery.reindex(embed_many, batch=self.settings.batch_max_size, prune=prune, announce=announce)
        self.rebuild()
        return result

    def ready(self) -> dict[str, Any]:
        b = self.bundles.current
        store = b.gallery.ping()
        if store:
            b.gallery.sync()  # a reindex run beside the server shows here without a restart
        status = "ok" if store else "store_unreachable"
        if store and b.gallery.reindex_required:
            status = "reindex_required"
        return {
            "ready": store,
            "status": status,
            "model": b.model_id,
            "providers": list(b.model.providers),
            "store": store,
            "references": len(b.gallery),
            "works_missing_embedding": b.gallery.missing,
            "reindex_required": b.gallery.reindex_required,
            "queue_depth": self.embedder.queue_depth,
        }
