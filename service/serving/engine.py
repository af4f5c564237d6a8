"""The service's logic behind one facade: compare, verify, identify, portfolios. No HTTP here.

Built from the typed `Settings` (service/config.py), where every default lives. Routes call an `Engine` and
turn its dataclasses into JSON; every caller-caused failure is a domain exception (service/errors.py; a full
model queue is `Overloaded`) or a contract `ImageError` for a bad picture, mapped to HTTP by
service/api/errors.py. The request path: bytes → `contract.decode.decode_bytes` (in a worker thread) →
`contract.recipe.model_inputs` as the card says → `MicroBatcher` → backbone → reference vectors → head scores →
`contract.aggregation` and `scoring` → decision. Before reading the index, verify and identify bring it up to
date with other replicas' writes (`Gallery.sync`). `evidence=n` on compare and verify sends regions of the decoded
query down the same path (service/serving/evidence.py); `work_image` renders a reference work's original as a thumbnail
(service/serving/thumbnails.py). Covered by tests/service/test_engine.py and tests/service/test_evidence.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract import quality
from contract.aggregation import aggregate, top_m
from contract.card import QualityBand
from contract.decode import Decoded, ImageError, ImageLimits, InvalidImage, decode_bytes
from contract.operating import OperatingPoint, Table, equal_error_point
from contract.quality import Measures
from service.config import Settings
from service.errors import Conflict, Invalid, NoFiles, Overloaded
from service.serving.batching import MicroBatcher
from service.serving.calibration import MODEL_CARD, CalibrationUsed, GalleryCalibrator, GalleryTables, choose
from service.serving.evidence import EvidenceMap, check_grid, evidence_map
from service.serving.model import Model
from service.serving.strictness import Strictness, portfolio_table, resolve
from service.serving.thumbnails import Thumbnail, thumbnail
from service.serving.thumbnails import check_request as check_thumbnail
from service.storage.db import open_database
from service.storage.gallery import Artist, Gallery, NewWork, Portfolio, ReferenceSpace, ReindexResult, Work

log = logging.getLogger(__name__)

MAX_K = 50
MAX_PAGE = 1000
MAX_META_BYTES = 16_384
ARTIST_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

__all__ = [
    "Artist",
    "Candidate",
    "Decision",
    "Engine",
    "ImageLimits",
    "Overloaded",
    "ReindexResult",
    "Strictness",
    "Verdict",
    "Work",
]


@dataclass(frozen=True)
class PictureQuality:
    """One upload's measured quality (contract.quality): its measures and, with the card's quality model, the
    score in [0, 1] (None: the model measured no quality)."""

    measures: Measures
    score: float | None


@dataclass(frozen=True)
class QualityUsed:
    """What a reply says about quality: the pictures', the pair's (their product; verify: the query's), the band
    whose rates were used (its lower edge; None: the model has no bands) and the floor below which it refuses."""

    score: float | None
    band: float | None
    floor: float | None
    pictures: tuple[PictureQuality, ...]


@dataclass(frozen=True)
class Decision:
    score: float
    threshold: float
    match: bool
    expected_fpr: float
    expected_fnr: float
    rule: str
    model: str
    # one-sided 95 % upper bounds of the expected rates for the pairs behind the table (None: not recorded)
    expected_fpr_upper: float | None = None
    expected_fnr_upper: float | None = None
    images: tuple[str, ...] = ()  # sha256 of the scored uploads, for the audit log
    calibration: CalibrationUsed = MODEL_CARD  # which tables gave the threshold and the expected rates
    evidence: EvidenceMap | None = None  # per-region scores of the query, when asked for (service/serving/evidence.py)
    quality: QualityUsed | None = None  # what the uploads' quality was and which band's rates it picked


@dataclass(frozen=True)
class Verdict(Decision):
    artist_id: str = ""
    portfolio_size: int = 0
    top_references: list[tuple[str, float]] = field(default_factory=list)  # (work id, pair score), best first


@dataclass(frozen=True)
class Candidate:
    artist_id: str
    name: str
    score: float
    references_scored: int


def _too_low(what: str, score: float, floor: float, m: Measures) -> str:
    jpeg = f", JPEG quality {m.jpeg_quality}" if m.jpeg_quality is not None else ""
    return (
        f"{what}'s measured quality is {score:.2f}, below {floor:.2f}, the lowest quality this model's error rates "
        f"were measured at ({m.width}×{m.height} px{jpeg}, sharpness {m.sharpness:.2f}): no rate could be "
        "claimed for it. Send a larger, sharper photograph of the painting, straight on, without heavy compression"
    )


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        formats=frozenset(settings.allowed_formats),
    )


class Engine:
    def __init__(
        self,
        model: Model,
        gallery: Gallery,
        settings: Settings,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.model = model
        self.gallery = gallery
        self.settings = settings
        self.limits = image_limits(settings)
        self.batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            self._embed_batch,
            weight=len,  # a picture weighs its crops: `batch_max_size` counts backbone inputs
            max_batch=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=on_batch,
            name="embed",
        )
        self.calibrator = GalleryCalibrator(
            self.gallery.snapshot,
            self.model.symmetric_scores,
            model.card.calibration.aggregation,
            min_artists=settings.gallery_calibration_min_artists,
            enabled=settings.gallery_calibration,
        )
        # bounds the memory of concurrent decodes (a 40-Mpixel upload is ~120 MB as RGB)
        self._decode_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings, on_batch: Callable[[int, float], None] | None = None) -> Engine:
        """The server's engine: loads the model `settings.model_dir` names."""
        return cls.build(Model.load(settings.model_dir, providers=settings.providers), settings, on_batch)

    @classmethod
    def build(cls, model: Model, settings: Settings, on_batch: Callable[[int, float], None] | None = None) -> Engine:
        """An engine around an already loaded model (tests and tools share one model between engines)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        assert settings.database_url is not None  # Settings fills it in (a SQLite file in data_dir)
        db = open_database(settings.database_url, settings.migrate_on_start)
        gallery = Gallery(db, settings.data_dir, ReferenceSpace.of(model), use_gpu=settings.gpu_index)
        return cls(model, gallery, settings, on_batch)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def close(self) -> None:
        self.batcher.close()
        self.gallery.db.dispose()

    @property
    def model_id(self) -> str:
        return self.model.model_id

    # ---- image → embedding ------------------------------------------------------------------------------
    def _decode_prepared(self, data: bytes, floor: bool = True) -> tuple[Decoded, np.ndarray, PictureQuality]:
        """Bytes → decoded picture, backbone inputs and measured quality; with `floor`, a picture below the
        card's quality floor is refused (422 `image_quality_too_low`) before the backbone sees it."""
        with self._decode_slots:
            decoded = decode_bytes(data, self.limits)
            pq = self._assess(decoded)
            if floor:
                self._check_floor(pq)
            return decoded, self.model.model_inputs(decoded.image), pq

    def _assess(self, decoded: Decoded) -> PictureQuality:
        qmodel = self.model.card.calibration.quality
        m = quality.measure_upload(
            decoded.image, decoded.n_bytes, decoded.jpeg_quality, self.model.card.backbone.preprocessing
        )
        return PictureQuality(m, None if qmodel is None else round(quality.score(m, qmodel), 4))

    def _check_floor(self, pq: PictureQuality, what: str = "the picture") -> None:
        qmodel = self.model.card.calibration.quality
        if qmodel is None or pq.score is None or pq.score >= qmodel.floor:
            return
        raise InvalidImage("image_quality_too_low", _too_low(what, pq.score, qmodel.floor, pq.measures))

    def _prepare(self, data: bytes, floor: bool = True) -> tuple[np.ndarray, str]:
        decoded, x, _ = self._decode_prepared(data, floor)
        return x, decoded.sha256

    async def _evidence(
        self,
        decoded: Decoded,
        grid: int,
        score: Callable[[list[np.ndarray]], list[float]],
        threshold: float,
        target: str,
    ) -> EvidenceMap:
        return await evidence_map(
            decoded.image,
            grid,
            prepare=self.model.model_inputs,
            embed=self.batcher.submit,
            score=score,
            threshold=threshold,
            target=target,
        )

    def _embed_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.model.embed_pictures(xs))

    async def _embed(self, data: bytes) -> tuple[np.ndarray, str]:
        x, sha = await asyncio.to_thread(self._prepare, data)
        return await self.batcher.submit(x), sha

    def _reference(self, emb: np.ndarray) -> np.ndarray:
        return self.model.reference_vectors(emb[None])[0]

    def _require_index(self) -> None:
        if self.gallery.reindex_required:
            raise Conflict(
                "reindex_required",
                f"{self.gallery.missing} enrolled works have no embedding for model {self.model_id}; "
                "run `python -m service reindex`",
            )

    # ---- scoring routes ---------------------------------------------------------------------------------
    def _gallery_tables(self) -> tuple[GalleryTables | None, str]:
        """The gallery's own tables when it has them (asking for newer ones if the gallery moved), else None and
        why not."""
        if not self.calibrator.enabled:
            return None, "gallery calibration is off (BRUSHPRINT_GALLERY_CALIBRATION=false)"
        self.calibrator.poke(self.gallery.replicas.version)
        tables = self.calibrator.tables
        return tables, "" if tables is not None else self.calibrator.why_none

    def _band(self, score: float | None, what: str, pictures: Sequence[PictureQuality]) -> QualityBand | None:
        """The card's band for a pair (or query) of quality `score`; None when the card has no bands. Below the
        lowest band the model's rates were never measured: 422 `image_quality_too_low`."""
        cal = self.model.card.calibration
        if not cal.bands or score is None:
            return None
        band = quality.band_for(score, cal.bands)
        if band is None:
            assert cal.quality is not None
            worst = min(pictures, key=lambda p: p.score if p.score is not None else 1.0)
            raise InvalidImage(
                "image_quality_too_low", _too_low(what, score, cal.bands[-1].min_quality, worst.measures)
            )
        return band

    def _quality_used(self, score: float | None, band: QualityBand | None, pictures: Sequence[PictureQuality]):  # type: ignore[no-untyped-def]
        qmodel = self.model.card.calibration.quality
        return QualityUsed(
            score=None if score is None else round(score, 4),
            band=None if band is None else band.min_quality,
            floor=None if qmodel is None else qmodel.floor,
            pictures=tuple(pictures),
        )

    def _calibration(
        self, level: str, card_table: Table, card_default: tuple[float, str], band: QualityBand | None
    ) -> tuple[Table, tuple[float, str], CalibrationUsed]:
        """(table, default point, source) for `level` ("pair" or "portfolio"): the card's table for the band the
        pictures' quality picked (or its published table without bands), or the gallery's own when it is at least
        as certain (service/serving/calibration.py `choose`) — and only for pictures of the top band, the quality a
        gallery's enrolled works stand for."""
        cal = self.model.card.calibration
        if band is not None:
            card_table, card_default = quality.band_table(band, level)
        tables, why_not = self._gallery_tables()
        gallery = None
        if tables is not None:
            gallery = tables.pair_table() if level == "pair" else tables.portfolio_table()
            if band is not None and band is not cal.bands[0]:
                gallery, why_not = (
                    None,
                    (
                        f"the pictures' quality is in the band from {band.min_quality:g}, below the top band "
                        f"(from {cal.bands[0].min_quality:g}) that the gallery's own works stand for"
                    ),
                )
        table, used = choose(card_table, gallery, why_not)
        if used.source == "gallery":
            label = "this gallery's own pairs" if level == "pair" else "this gallery's leave-one-out portfolios"
            return table, equal_error_point(table.rows, label), used
        return table, card_default, used

    def _pair_calibration(self, band: QualityBand | None = None) -> tuple[Table, tuple[float, str], CalibrationUsed]:
        cal = self.model.card.calibration
        return self._calibration("pair", Table.pair_of(cal), (cal.recommended_threshold, cal.recommended_rule), band)

    def _portfolio_calibration(
        self, n: int, band: QualityBand | None = None
    ) -> tuple[Table, tuple[float, str], CalibrationUsed]:
        """For a portfolio of n works. The card's recommended threshold is the pair-level EER point; a portfolio
        score (top-m mean) has its own distribution, so verify's default is the EER point of its own table."""
        cal = self.model.card.calibration
        card_table, k = portfolio_table(cal, n)
        default = (
            equal_error_point(card_table.rows, f"the k={k} portfolio calibration")
            if k is not None
            else (cal.recommended_threshold, cal.recommended_rule)
        )
        return self._calibration("portfolio", card_table, default, band)

    async def compare(
        self, image_a: bytes, image_b: bytes, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Decision:
        """Pair score of two uploads. `evidence=n` adds an n×n evidence map of image_a against image_b."""
        grid = None if evidence is None else check_grid(evidence)
        (ca, xa, qa), (cb, xb, qb) = await asyncio.gather(
            asyncio.to_thread(self._decode_prepared, image_a), asyncio.to_thread(self._decode_prepared, image_b)
        )
        pair_q = None if qa.score is None or qb.score is None else float(quality.pair_quality(qa.score, qb.score))
        band = self._band(pair_q, "the pair", (qa, qb))
        table, recommended, used = self._pair_calibration(band)
        op = resolve(table, strictness or Strictness(), recommended)
        sa, sb = ca.sha256, cb.sha256
        # submitted in a canonical order so compare(a, b) and compare(b, a) run the very same batch
        first, second = (xa, xb) if sa <= sb else (xb, xa)
        e1, e2 = await asyncio.gather(self.batcher.submit(first), self.batcher.submit(second))
        score = float(await asyncio.to_thread(self._pair_score, e1, e2))
        emap = None
        if grid is not None:
            other = self._reference(e2 if sa <= sb else e1)

            def against_b(embs: list[np.ndarray]) -> list[float]:
                regions = self.model.reference_vectors(np.stack(embs))
                return [float(s) for s in self.model.score_against(other, regions)]

            emap = await self._evidence(ca, grid, against_b, op.threshold, "image_b")
        return Decision(
            **self._decided(score, op),
            images=(sa, sb),
            calibration=used,
            evidence=emap,
            quality=self._quality_used(pair_q, band, (qa, qb)),
        )

    def _decided(self, score: float, op: OperatingPoint) -> dict[str, Any]:
        """The fields every decision shares: the score judged at the operating point, with its expected rates."""
        return dict(
            score=score,
            threshold=op.threshold,
            match=score >= op.threshold,
            expected_fpr=op.fpr,
            expected_fnr=op.fnr,
            expected_fpr_upper=op.fpr_upper,
            expected_fnr_upper=op.fnr_upper,
            rule=op.rule,
            model=self.model_id,
        )

    def _pair_score(self, ea: np.ndarray, eb: np.ndarray) -> float:
        va, vb = self.model.reference_vectors(np.stack([ea, eb]))
        return float(self.model.symmetric_scores(va[None], vb[None])[0])

    async def verify(
        self, image: bytes, artist_id: str, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Verdict:
        """Portfolio score of an upload. `evidence=n` adds an n×n evidence map against the same portfolio."""
        grid = None if evidence is None else check_grid(evidence)
        self._require_index()
        portfolio = await asyncio.to_thread(self._current_portfolio, artist_id)  # 404 before any model work
        n = len(portfolio.work_ids)
        if n == 0:
            raise Conflict("empty_portfolio", f"artist {artist_id!r} has no enrolled works to verify against")
        cal = self.model.card.calibration
        decoded, x, pq = await asyncio.to_thread(self._decode_prepared, image)
        band = self._band(pq.score, "the picture", (pq,))
        table, recommended, used = self._portfolio_calibration(n, band)
        op = resolve(table, strictness or Strictness(), recommended)
        emb = await self.batcher.submit(x)
        scores = await asyncio.to_thread(self._score_portfolio, emb, portfolio.vectors)
        score = aggregate(scores, cal.aggregation)
        top = top_m(scores, cal.aggregation)
        emap = None
        if grid is not None:

            def against_portfolio(embs: list[np.ndarray]) -> list[float]:
                return [aggregate(self._score_portfolio(e, portfolio.vectors), cal.aggregation) for e in embs]

            emap = await self._evidence(decoded, grid, against_portfolio, op.threshold, "portfolio")
        return Verdict(
            **self._decided(score, op),
            images=(decoded.sha256,),
            calibration=used,
            evidence=emap,
            quality=self._quality_used(pq.score, band, (pq,)),
            artist_id=artist_id,
            portfolio_size=n,
            top_references=[(portfolio.work_ids[i], float(scores[i])) for i in top],
        )

    def _current_portfolio(self, artist_id: str) -> Portfolio:
        self.gallery.sync()
        self.gallery.get_artist(artist_id)
        return self.gallery.portfolio(artist_id)

    def _score_portfolio(self, emb: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self.model.score_against(self._reference(emb), vectors)

    async def identify(self, image: bytes, k: int = 5) -> list[Candidate]:
        """Rank enrolled artists for an image: faiss shortlist of references, then each shortlisted artist's
        whole portfolio rescored by the head and aggregated as in verify. Fewer than k candidates when the
        shortlist holds fewer artists; an empty gallery gives an empty list."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise Invalid("invalid_k", f"k must be an integer between 1 and {MAX_K}, not {k!r}")
        self._require_index()
        emb, _ = await self._embed(image)
        return await asyncio.to_thread(self._rank, emb, k)

    def _rank(self, emb: np.ndarray, k: int) -> list[Candidate]:
        query = self._reference(emb)
        self.gallery.sync()
        hits = self.gallery.search(query, self.settings.identify_shortlist)
        artists = list(dict.fromkeys(h.artist_id for h in hits))
        agg = self.model.card.calibration.aggregation
        scored: list[tuple[float, str, int]] = []
        for artist_id in artists:
            p = self.gallery.portfolio(artist_id)
            if not p.work_ids:  # deleted since the search
                continue
            scores = self.model.score_against(query, p.vectors)
            scored.append((aggregate(scores, agg), artist_id, len(p.work_ids)))
        scored.sort(key=lambda t: (-t[0], t[1]))
        names = self.gallery.artist_names([a for _, a, _ in scored[:k]])
        return [Candidate(a, names.get(a, ""), s, n) for s, a, n in scored[:k] if a in names]

    # ---- artists and works ------------------------------------------------------------------------------
    def create_artist(self, artist_id: str, name: str, meta: dict | None = None) -> Artist:
        if not isinstance(artist_id, str) or not ARTIST_ID_RE.fullmatch(artist_id):
            raise Invalid("invalid_artist_id", "artist id must be 1–64 characters of letters, digits, '_', '.', '-'")
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise Invalid("invalid_name", "name must be a non-empty string of at most 256 characters")
        if meta is not None and not isinstance(meta, dict):
            raise Invalid("invalid_meta", "meta must be a JSON object")
        try:
            encoded = json.dumps(meta or {}, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Invalid("invalid_meta", f"meta must be plain JSON: {e}") from e
        if len(encoded.encode()) > MAX_META_BYTES:
            raise Invalid("invalid_meta", f"meta must be at most {MAX_META_BYTES} bytes as JSON")
        return self.gallery.create_artist(artist_id, name.strip(), meta or {})

    def list_artists(self, offset: int = 0, limit: int = 50) -> tuple[list[Artist], int]:
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise Invalid("invalid_pagination", f"offset must be ≥ 0 and limit between 1 and {MAX_PAGE}")
        return self.gallery.list_artists(offset, limit)

    def get_artist(self, artist_id: str) -> Artist:
        return self.gallery.get_artist(artist_id)

    def delete_artist(self, artist_id: str) -> None:
        self.gallery.delete_artist(artist_id)

    async def add_works(self, artist_id: str, files: Sequence[tuple[str, bytes]]) -> list[Work]:
        """Enrol uploads into a portfolio, all or nothing: any bad file (its name is in the message) or a
        duplicate leaves the portfolio and the originals store as they were."""
        if not files:
            raise NoFiles()
        await asyncio.to_thread(self.gallery.get_artist, artist_id)
        items: list[NewWork] = []
        # a chunk goes to the backbone queue at once: never more than the queue holds, or an idle server would shed it
        step = max(1, min(self.settings.batch_max_size, self.settings.max_queue))
        for start in range(0, len(files), step):
            chunk = files[start : start + step]
            prepared = await asyncio.gather(*(self._prepare_named(name, data) for name, data in chunk))
            embs = await asyncio.gather(*(self.batcher.submit(x) for x, _ in prepared))
            for (name, data), (_, sha), emb in zip(chunk, prepared, embs, strict=True):
                items.append(NewWork(filename=name or "", data=data, sha256=sha, embedding=emb))
        return await asyncio.to_thread(self.gallery.add_works, artist_id, items)

    async def _prepare_named(self, name: str, data: bytes) -> tuple[np.ndarray, str]:
        try:
            return await asyncio.to_thread(self._prepare, data)
        except ImageError as e:
            # the same error, naming the file: one bad file refuses the whole enrolment
            raise e.about(name or "upload") from e

    def list_works(self, artist_id: str) -> list[Work]:
        return self.gallery.list_works(artist_id)

    def delete_work(self, artist_id: str, work_id: str) -> None:
        self.gallery.delete_work(artist_id, work_id)

    async def work_image(self, artist_id: str, work_id: str, max_side: int = 256, fmt: str = "jpeg") -> Thumbnail:
        """A reference work's original, scaled to at most `max_side` px, as JPEG or PNG."""
        check_thumbnail(max_side, fmt)
        data = await asyncio.to_thread(self.gallery.original, artist_id, work_id)
        # it passed these checks at enrolment; the byte limit is lifted so a later, smaller limit cannot hide it
        limits = ImageLimits(
            max_bytes=max(len(data), 1), max_pixels=self.limits.max_pixels, formats=self.limits.formats
        )

        def render() -> Thumbnail:
            with self._decode_slots:
                return thumbnail(decode_bytes(data, limits).image, max_side, fmt)

        return await asyncio.to_thread(render)

    # ---- operations -------------------------------------------------------------------------------------
    def reindex(
        self, prune: bool = False, on_progress: Callable[[int], None] | None = None, announce: bool = True
    ) -> ReindexResult:
        """Re-embed every work lacking an embedding of the current model from its original (synchronous;
        the CLI runs it, a route would use a thread). `on_progress(n)` hears of each batch of n originals."""

        def embed_many(datas: list[bytes]) -> list[np.ndarray | Exception]:
            out = self._embed_many(datas)
            if on_progress is not None:
                on_progress(len(datas))
            return out

        return self.gallery.reindex(embed_many, batch=self.settings.batch_max_size, prune=prune, announce=announce)

    def _embed_many(self, datas: list[bytes]) -> list[np.ndarray | Exception]:
        out: list[np.ndarray | Exception] = []
        xs: list[np.ndarray] = []
        slots: list[int] = []
        for data in datas:
            try:
                xs.append(self._prepare(data, floor=False)[0])  # enrolled before: re-embed, never refuse
                slots.append(len(out))
                out.append(np.zeros(0))
            except ImageError as e:  # the original no longer decodes under today's limits
                out.append(e)
        if xs:
            for slot, emb in zip(slots, self.model.embed_pictures(xs), strict=True):
                out[slot] = emb
        return out

    def ready(self) -> dict[str, Any]:
        store = self.gallery.ping()
        status = "ok" if store else "store_unreachable"
        if store and self.gallery.reindex_required:
            status = "reindex_required"
        return {
            "ready": store,
            "status": status,
            "model": self.model_id,
            "providers": list(self.model.providers),
            "store": store,
            "references": len(self.gallery),
            "works_missing_embedding": self.gallery.missing,
            "reindex_required": self.gallery.reindex_required,
            "queue_depth": self.batcher.queue_depth,
        }
