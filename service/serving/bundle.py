"""The serving bundle: everything that depends on the model, built together and swapped as one.

A `Bundle` holds one model's ONNX sessions (`model`), the card's quality rules (`quality`) and, per collection, a
`View`: that collection's gallery over the model's embeddings (`gallery`: its reference vectors and faiss index),
the gallery calibrator that scores the collection's enrolled works with that model (`calibrator`), and the choice
of a decision's calibration table (`pair_calibration`, `portfolio_calibration`). A collection's identify, verify
and calibration read its view only, so nothing of one collection reaches another's answers. Views are built with
the bundle for every collection that exists, and on first use for one made later. A bundle's parts never change:
a model change builds a new bundle (and new views).

Each bundle has its own embedding cache (`cache`, service/serving/cache.py): a new bundle starts with an empty one,
so no embedding outlives the model, recipe and quality rules that made it; `forget` drops a deleted collection's
entries with its view.

`BundleFactory` is the one place bundles are built — at startup, after a reindex and when an upgrade stages a
new model (service/ops/upgrade.py). `BundleSlot` is the one reference to the bundle that serves: a request reads
`slot.current` once and uses that bundle to the end, so no request sees parts of two bundles however the slot
changes meanwhile; `swap` replaces it between requests. Covered by tests/service/test_bundle.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from contract import quality
from contract.card import QualityBand
from contract.operating import Table, equal_error_point
from service.config import Settings
from service.serving.cache import MB, CacheStats, PictureCache
from service.serving.calibration import CalibrationUsed, GalleryCalibrator, GalleryTables, choose
from service.serving.model import Model, SessionConfig
from service.serving.quality import QualityRules
from service.serving.strictness import portfolio_table
from service.storage.gallery import Gallery, ReferenceSpace
from service.storage.store import Store

# (table, default (threshold, rule), what the reply says about the table)
Calibrated = tuple[Table, tuple[float, str], CalibrationUsed]


@dataclass(frozen=True, eq=False)
class View:
    """One collection's part of a bundle: its gallery (the collection's references and faiss index, nothing of
    any other collection's) and the calibrator that scores those works with the bundle's model; it chooses the
    calibration table of a decision (`pair_calibration`, `portfolio_calibration`). Built by its bundle."""

    bundle: Bundle
    collection: str
    gallery: Gallery
    calibrator: GalleryCalibrator

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    # ---- which calibration a decision is judged by --------------------------------------------------------
    def _gallery_tables(self) -> tuple[GalleryTables | None, str]:
        """The collection's own tables when it has them (asking for newer ones if its gallery moved), else None
        and why not."""
        if not self.calibrator.enabled:
            return None, "gallery calibration is off (BRUSHPRINT_GALLERY_CALIBRATION=false)"
        self.calibrator.poke(self.gallery.replicas.version)
        tables = self.calibrator.tables
        return tables, "" if tables is not None else self.calibrator.why_none

    def _calibration(
        self, level: str, card_table: Table, card_default: tuple[float, str], band: QualityBand | None
    ) -> Calibrated:
        """(table, default point, source) for `level` ("pair" or "portfolio"): the card's table for the band the
        pictures' quality picked (or its published table without bands), or the collection's own when it is at
        least as certain (service/serving/calibration.py `choose`) — and only for pictures of the top band, the
        quality a gallery's enrolled works stand for."""
        if band is not None:
            card_table, card_default = quality.band_table(band, level)
        tables, why_not = self._gallery_tables()
        gallery = None
        if tables is not None:
            gallery = tables.pair_table() if level == "pair" else tables.portfolio_table()
            top = self.bundle.quality.top_band
            if band is not None and top is not None and band is not top:
                gallery, why_not = (
                    None,
                    (
                        f"the pictures' quality is in the band from {band.min_quality:g}, below the top band "
                        f"(from {top.min_quality:g}) that the gallery's own works stand for"
                    ),
                )
        table, used = choose(card_table, gallery, why_not)
        if used.source == "gallery":
            assert tables is not None
            label = "this gallery's own pairs" if level == "pair" else "this gallery's leave-one-out portfolios"
            return table, equal_error_point(table.rows, label), replace(used, model=tables.model_id)
        return table, card_default, replace(used, model=self.model_id)

    def open_set_calibration(self, band: QualityBand | None = None) -> tuple[Table | None, CalibrationUsed]:
        """identify's open-set table: the gallery's leave-one-out identify trials only (a card cannot know which
        artists a gallery holds), for pictures of the top band; None, and why, when there is none."""
        tables, why_not = self._gallery_tables()
        top = self.bundle.quality.top_band
        if tables is not None and band is not None and top is not None and band is not top:
            tables, why_not = (
                None,
                (
                    f"the picture's quality is in the band from {band.min_quality:g}, below the top band (from "
                    f"{top.min_quality:g}) that the gallery's own works stand for"
                ),
            )
        if tables is None or not tables.open_set:
            return None, CalibrationUsed("gallery", reason=why_not or "the gallery has no identify trials yet")
        table = tables.open_set_table()
        why = (
            f"the gallery's own leave-one-out identify trials: {table.genuine} of enrolled artists' works, "
            f"{table.impostor} of works whose artist was left out"
        )
        return table, replace(CalibrationUsed.of("gallery", table, why), model=tables.model_id)

    def pair_calibration(self, band: QualityBand | None = None) -> Calibrated:
        cal = self.bundle.model.card.calibration
        return self._calibration("pair", Table.pair_of(cal), (cal.recommended_threshold, cal.recommended_rule), band)

    def portfolio_calibration(self, n: int, band: QualityBand | None = None) -> Calibrated:
        """For a portfolio of n works. The card's recommended threshold is the pair-level EER point; a portfolio
        score (top-m mean) has its own distribution, so verify's default is the EER point of its own table."""
        cal = self.bundle.model.card.calibration
        card_table, k = portfolio_table(cal, n)
        default = (
            equal_error_point(card_table.rows, f"the k={k} portfolio calibration")
            if k is not None
            else (cal.recommended_threshold, cal.recommended_rule)
        )
        return self._calibration("portfolio", card_table, default, band)


@dataclass(frozen=True, eq=False)
class Bundle:
    """One model's sessions (`model`), quality rules (`quality`) and the store its galleries share (`store`), a
    `View` per collection, built on first use by `view(collection)` (the factory builds those of every existing
    collection with the bundle, so requests find them ready) and kept for the bundle's life, and the uploads it
    embedded (`cache`, keyed by collection)."""

    model: Model
    store: Store
    quality: QualityRules
    build_view: Callable[[Bundle, str], View] = field(repr=False)
    cache: PictureCache = field(default_factory=PictureCache, repr=False)
    _views: dict[str, View] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def view(self, collection: str) -> View:
        """The collection's view (its gallery loaded from the store the first time: call it off the event loop)."""
        found = self._views.get(collection)
        if found is not None:
            return found
        with self._lock:
            found = self._views.get(collection)
            if found is None:
                found = self._views[collection] = self.build_view(self, collection)
            return found

    def views(self) -> list[View]:
        """The views built so far."""
        with self._lock:
            return list(self._views.values())

    def forget(self, collection: str) -> None:
        """Drop a deleted collection's view (another process's view of it finds it empty on its next sync) and its
        cached pictures."""
        with self._lock:
            self._views.pop(collection, None)
        self.cache.forget(collection)

    def sync(self) -> None:
        """Bring every view's index up to date with other processes' writes."""
        for v in self.views():
            v.gallery.sync()

    def calibrate(self) -> None:
        """Build every view's gallery tables now, in this thread (an upgrade's staging: off the request path)."""
        for v in self.views():
            v.calibrator.refresh()


class BundleFactory:
    """Builds every bundle of one serving process, over its database and data directory.

    `on_build(bundle)` runs on each new bundle before it is handed out (the model switch installs its write
    guard there, service/ops/upgrade.py). Every bundle gets an empty cache of `embedding_cache_mb`; all of them
    count into `cache_stats`, the process's."""

    def __init__(self, db: SqlEngine, settings: Settings):
        self.db = db
        self.settings = settings
        self.on_build: Callable[[Bundle], None] | None = None
        self.cache_stats = CacheStats()

    def load(self, model_dir: str | Path) -> Bundle:
        """A bundle for the model in `model_dir` (its files checked against its card), its onnxruntime sessions
        made as the settings say (`SessionConfig.of`)."""
        s = self.settings
        return self(Model.load(model_dir, providers=s.providers, session=SessionConfig.of(s)))

    def __call__(self, model: Model) -> Bundle:
        bundle = Bundle(
            model=model,
            store=Store(self.db),
            quality=QualityRules(model.card),
            build_view=self._view,
            cache=PictureCache(self.settings.embedding_cache_mb * MB, self.cache_stats),
        )
        for collection in bundle.store.collection_ids():
            bundle.view(collection)
        if self.on_build is not None:
            self.on_build(bundle)
        return bundle

    def _view(self, bundle: Bundle, collection: str) -> View:
        s, model = self.settings, bundle.model
        gallery = Gallery(
            self.db,
            s.data_dir,
            ReferenceSpace.of(model),
            use_gpu=s.gpu_index,
            collection=collection,
            store=bundle.store,
        )
        calibrator = GalleryCalibrator(
            gallery.snapshot,
            model.symmetric_scores,
            model.card.calibration.aggregation,
            min_artists=s.gallery_calibration_min_artists,
            enabled=s.gallery_calibration,
            model_id=model.model_id,
            shortlist=s.identify_shortlist,
        )
        return View(bundle=bundle, collection=collection, gallery=gallery, calibrator=calibrator)


class BundleSlot:
    """The single reference to the serving bundle."""

    def __init__(self, bundle: Bundle):
        self._current = bundle
        self._lock = threading.Lock()

    @property
    def current(self) -> Bundle:
        return self._current

    def swap(self, bundle: Bundle) -> Bundle:
        """Serve `bundle` from the next read on; returns the one it replaces."""
        with self._lock:
            old, self._current = self._current, bundle
        return old
