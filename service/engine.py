"""The service's logic behind one facade: compare, verify, identify, portfolios. No HTTP here.

Routes call an `Engine` and turn its dataclasses into JSON; every caller-caused failure arrives as an
`ApiError` (service/errors.py), a full model queue as `batching.Overloaded` (→ 503 + Retry-After).
The request path: bytes → `imaging.load_image` (in a worker thread) → `preprocess` as the card says →
`MicroBatcher` → backbone → reference vectors → head scores → `scoring` → decision.
Covered by tests/service/test_engine.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.batching import BatchConfig, MicroBatcher, Overloaded
from service.db import make_engine, sqlite_url
from service.errors import ApiError
from service.evidence import EvidenceMap, check_grid, evidence_map
from service.gallery import Artist, Gallery, NewWork, ReindexResult, Work
from service.imaging import DEFAULT_FORMATS, CheckedImage, ImageLimits, load_image
from service.model import Model
from service.scoring import (
    OperatingPoint,
    Strictness,
    aggregate,
    equal_error_point,
    portfolio_table,
    resolve,
    top_m,
)
from service.thumbnails import Thumbnail, thumbnail
from service.thumbnails import check_request as check_thumbnail

log = logging.getLogger(__name__)

MAX_K = 50
MAX_PAGE = 1000
MAX_META_BYTES = 16_384

__all__ = [
    "Artist",
    "BatchConfig",
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
class Decision:
    score: float
    threshold: float
    match: bool
    expected_fpr: float
    expected_fnr: float
    rule: str
    model: str
    images: tuple[str, ...] = ()  # sha256 of the scored uploads, for the audit log
    evidence: EvidenceMap | None = None  # per-region scores of the query, when asked for (service/evidence.py)


@dataclass(frozen=True)
class Verdict(Decision):
    artist_id: str = ""
    portfolio_size: int = 0
    calibration_k: int | None = None  # the simulated portfolio size whose table gave the expected rates
    top_references: list[tuple[str, float]] = field(default_factory=list)  # (work id, pair score), best first


@dataclass(frozen=True)
class Candidate:
    artist_id: str
    name: str
    score: float
    references_scored: int


def _formats(value: Any) -> frozenset[str]:
    if value is None:
        return DEFAULT_FORMATS
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    return frozenset(str(v).strip().upper() for v in value)


class Engine:
    def __init__(
        self,
        model: Model,
        gallery: Gallery,
        limits: ImageLimits | None = None,
        batch: BatchConfig | None = None,
        identify_shortlist: int = 100,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.model = model
        self.gallery = gallery
        self.limits = limits or ImageLimits()
        self.batch = batch or BatchConfig()
        self.identify_shortlist = identify_shortlist
        self.batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher.from_config(
            self._embed_batch, self.batch, on_batch=on_batch, name="embed"
        )
        # bounds the memory of concurrent decodes (a 40-Mpixel upload is ~120 MB as RGB)
        self._decode_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        model_dir: str | Path,
        data_dir: str | Path,
        database_url: str | None = None,
        limits: ImageLimits | None = None,
        batch: BatchConfig | None = None,
        providers: str = "auto",
        identify_shortlist: int = 100,
        on_batch: Callable[[int, float], None] | None = None,
        use_gpu_index: bool | None = None,
    ) -> Engine:
        model = Model.load(model_dir, providers=providers)
        return cls.build(model, data_dir, database_url, limits, batch, identify_shortlist, on_batch, use_gpu_index)

    @classmethod
    def build(
        cls,
        model: Model,
        data_dir: str | Path,
        database_url: str | None = None,
        limits: ImageLimits | None = None,
        batch: BatchConfig | None = None,
        identify_shortlist: int = 100,
        on_batch: Callable[[int, float], None] | None = None,
        use_gpu_index: bool | None = None,
    ) -> Engine:
        """An engine around an already loaded model (tests and tools share one model between engines)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        db = make_engine(database_url or sqlite_url(data_dir / "brushprint.db"))
        gallery = Gallery(
            db,
            data_dir,
            model.model_id,
            model.embedding_dim,
            model.reference_dim,
            model.reference_vectors,
            use_gpu=use_gpu_index,
        )
        return cls(model, gallery, limits, batch, identify_shortlist, on_batch)

    @classmethod
    def from_settings(cls, settings: Any, on_batch: Callable[[int, float], None] | None = None) -> Engine:
        def get(name: str, default: Any) -> Any:
            value = getattr(settings, name, default)
            return default if value is None else value

        limits = ImageLimits(
            max_bytes=int(get("max_upload_bytes", 20 * 1024 * 1024)),
            max_pixels=int(get("max_pixels", 40_000_000)),
            formats=_formats(getattr(settings, "allowed_formats", None)),
        )
        batch = BatchConfig(
            max_batch=int(get("batch_max_size", 16)),
            max_wait_ms=float(get("batch_max_wait_ms", 5)),
            max_queue=int(get("max_queue", 256)),
        )
        return cls.create(
            model_dir=get("model_dir", "models/default"),
            data_dir=get("data_dir", "data"),
            database_url=getattr(settings, "database_url", None) or None,
            limits=limits,
            batch=batch,
            providers=str(get("providers", "auto")),
            identify_shortlist=int(get("identify_shortlist", 100)),
            on_batch=on_batch,
        )

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
    def _decode(self, data: bytes) -> CheckedImage:
        with self._decode_slots:
            return load_image(data, self.limits)

    def _prepare(self, data: bytes) -> tuple[np.ndarray, str]:
        checked = self._decode(data)
        return self.model.preprocess(checked.image), checked.sha256

    def _decode_prepared(self, data: bytes) -> tuple[CheckedImage, np.ndarray]:
        checked = self._decode(data)
        return checked, self.model.preprocess(checked.image)

    async def _evidence(
        self,
        checked: CheckedImage,
        grid: int,
        score: Callable[[list[np.ndarray]], list[float]],
        threshold: float,
        target: str,
    ) -> EvidenceMap:
        return await evidence_map(
            checked.image,
            grid,
            prepare=self.model.preprocess,
            embed=self.batcher.submit,
            score=score,
            threshold=threshold,
            target=target,
        )

    def _embed_batch(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.model.embed(np.stack(xs)))

    async def _embed(self, data: bytes) -> tuple[np.ndarray, str]:
        x, sha = await asyncio.to_thread(self._prepare, data)
        return await self.batcher.submit(x), sha

    def _reference(self, emb: np.ndarray) -> np.ndarray:
        return self.model.reference_vectors(emb[None])[0]

    def _require_index(self) -> None:
        if self.gallery.reindex_required:
            raise ApiError(
                409,
                "reindex_required",
                f"{self.gallery.missing} enrolled works have no embedding for model {self.model_id}; "
                "run `python -m service reindex`",
            )

    # ---- scoring routes ---------------------------------------------------------------------------------
    async def compare(
        self, image_a: bytes, image_b: bytes, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Decision:
        """Pair score of two uploads. `evidence=n` adds an n×n evidence map of image_a against image_b."""
        grid = None if evidence is None else check_grid(evidence)
        cal = self.model.card.calibration
        op = resolve(cal.pair, strictness or Strictness(), cal.recommended_threshold, cal.recommended_rule)
        (ca, xa), (cb, xb) = await asyncio.gather(
            asyncio.to_thread(self._decode_prepared, image_a), asyncio.to_thread(self._decode_prepared, image_b)
        )
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
        return Decision(**self._decided(score, op), images=(sa, sb), evidence=emap)

    def _decided(self, score: float, op: OperatingPoint) -> dict[str, Any]:
        """The fields every decision shares: the score judged at the operating point, with its expected rates."""
        return dict(
            score=score,
            threshold=op.threshold,
            match=score >= op.threshold,
            expected_fpr=op.expected_fpr,
            expected_fnr=op.expected_fnr,
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
        await asyncio.to_thread(self.gallery.get_artist, artist_id)  # 404 before any model work
        portfolio = self.gallery.portfolio(artist_id)
        n = len(portfolio.work_ids)
        if n == 0:
            raise ApiError(409, "empty_portfolio", f"artist {artist_id!r} has no enrolled works to verify against")
        cal = self.model.card.calibration
        table, k = portfolio_table(cal, n)
        # The card's recommended threshold is the pair-level EER point; a portfolio score (top-m mean) has its
        # own distribution, so verify's default is the EER point of the portfolio table it is judged by.
        recommended = (
            equal_error_point(table, f"the k={k} portfolio calibration")
            if k is not None
            else (cal.recommended_threshold, cal.recommended_rule)
        )
        op = resolve(table, strictness or Strictness(), *recommended)
        checked, x = await asyncio.to_thread(self._decode_prepared, image)
        emb = await self.batcher.submit(x)
        scores = await asyncio.to_thread(self._score_portfolio, emb, portfolio.vectors)
        score = aggregate(scores, cal.aggregation)
        top = top_m(scores, cal.aggregation)
        emap = None
        if grid is not None:

            def against_portfolio(embs: list[np.ndarray]) -> list[float]:
                return [aggregate(self._score_portfolio(e, portfolio.vectors), cal.aggregation) for e in embs]

            emap = await self._evidence(checked, grid, against_portfolio, op.threshold, "portfolio")
        return Verdict(
            **self._decided(score, op),
            images=(checked.sha256,),
            evidence=emap,
            artist_id=artist_id,
            portfolio_size=n,
            calibration_k=k,
            top_references=[(portfolio.work_ids[i], float(scores[i])) for i in top],
        )

    def _score_portfolio(self, emb: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self.model.score_against(self._reference(emb), vectors)

    async def identify(self, image: bytes, k: int = 5) -> list[Candidate]:
        """Rank enrolled artists for an image: faiss shortlist of references, then each shortlisted artist's
        whole portfolio rescored by the head and aggregated as in verify. Fewer than k candidates when the
        shortlist holds fewer artists; an empty gallery gives an empty list."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ApiError(422, "invalid_k", f"k must be an integer between 1 and {MAX_K}, not {k!r}")
        self._require_index()
        emb, _ = await self._embed(image)
        return await asyncio.to_thread(self._rank, emb, k)

    def _rank(self, emb: np.ndarray, k: int) -> list[Candidate]:
        query = self._reference(emb)
        hits = self.gallery.search(query, self.identify_shortlist)
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
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise ApiError(422, "invalid_name", "name must be a non-empty string of at most 256 characters")
        if meta is not None and not isinstance(meta, dict):
            raise ApiError(422, "invalid_meta", "meta must be a JSON object")
        try:
            encoded = json.dumps(meta or {}, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ApiError(422, "invalid_meta", f"meta must be plain JSON: {e}") from e
        if len(encoded.encode()) > MAX_META_BYTES:
            raise ApiError(422, "invalid_meta", f"meta must be at most {MAX_META_BYTES} bytes as JSON")
        return self.gallery.create_artist(artist_id, name.strip(), meta or {})

    def list_artists(self, offset: int = 0, limit: int = 50) -> tuple[list[Artist], int]:
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise ApiError(422, "invalid_pagination", f"offset must be ≥ 0 and limit between 1 and {MAX_PAGE}")
        return self.gallery.list_artists(offset, limit)

    def get_artist(self, artist_id: str) -> Artist:
        return self.gallery.get_artist(artist_id)

    def delete_artist(self, artist_id: str) -> None:
        self.gallery.delete_artist(artist_id)

    async def add_works(self, artist_id: str, files: Sequence[tuple[str, bytes]]) -> list[Work]:
        """Enrol uploads into a portfolio, all or nothing: any bad file (its name is in the message) or a
        duplicate leaves the portfolio and the originals store as they were."""
        if not files:
            raise ApiError(422, "no_files", "no image was uploaded")
        await asyncio.to_thread(self.gallery.get_artist, artist_id)
        items: list[NewWork] = []
        # a chunk goes to the backbone queue at once: never more than the queue holds, or an idle server would shed it
        step = max(1, min(self.batch.max_batch, self.batch.max_queue))
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
        except ApiError as e:
            raise ApiError(e.status, e.code, f"{name or 'upload'}: {e.message}", e.headers) from e

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
                return thumbnail(load_image(data, limits).image, max_side, fmt)

        return await asyncio.to_thread(render)

    # ---- operations -------------------------------------------------------------------------------------
    def reindex(self, prune: bool = False) -> ReindexResult:
        """Re-embed every work lacking an embedding of the current model from its original (synchronous;
        the CLI runs it, a route would use a thread)."""
        return self.gallery.reindex(self._embed_many, batch=self.batch.max_batch, prune=prune)

    def _embed_many(self, datas: list[bytes]) -> list[np.ndarray | Exception]:
        out: list[np.ndarray | Exception] = []
        xs: list[np.ndarray] = []
        slots: list[int] = []
        for data in datas:
            try:
                xs.append(self._prepare(data)[0])
                slots.append(len(out))
                out.append(np.zeros(0))
            except ApiError as e:
                out.append(e)
        if xs:
            for slot, emb in zip(slots, self.model.embed(np.stack(xs)), strict=True):
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

    def describe_model(self) -> dict[str, Any]:
        card = self.model.card
        return {
            "model": self.model_id,
            "name": card.name,
            "version": card.version,
            "head": card.head.kind,
            "embedding_dim": card.backbone.embedding_dim,
            "recommended_threshold": card.calibration.recommended_threshold,
            "recommended_rule": card.calibration.recommended_rule,
            "aggregation": card.calibration.aggregation.model_dump(mode="json"),
        }


def raise_overloaded(e: Overloaded) -> ApiError:
    """How the HTTP layer may map `Overloaded` if it prefers one exception type: 503 + Retry-After."""
    return ApiError(503, "overloaded", str(e), {"Retry-After": str(max(1, round(e.retry_after)))})
