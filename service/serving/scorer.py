"""Scoring: compare, verify, identify. No HTTP here.

`Scorer` answers with dataclasses (`Decision`, `Verdict`, `Candidate`) the routes turn into JSON; every
caller-caused failure is a domain exception (service/errors.py) or a contract `ImageError` for a bad picture,
mapped to HTTP by service/api/errors.py. A `Scorer` acts for one collection (`collection`, the caller's key's):
it reads that collection's view of the bundle only — its gallery, index and calibration — so no answer scores
against, ranks or counts another collection's works. Each call takes the serving bundle once (`BundleSlot.current`,
service/serving/bundle.py) and uses only that bundle to the end — its model, gallery, calibrator and quality
rules — so a reply never mixes two models, whatever an upgrade swaps meanwhile. The path: bytes → the bundle's
embedding cache (service/serving/cache.py; a hit skips the next two steps) → decode and quality
(service/serving/embedder.py) → backbone through the micro-batcher → reference vectors → head scores →
`contract.aggregation` and service/serving/strictness.py → decision. Before reading the index, verify and identify
bring it up to date with other replicas' writes (`Gallery.sync`). `evidence=n` scores regions of the query, pooled
from the crops the backbone already ran (service/serving/evidence.py). Covered by tests/service/test_engine.py and
tests/service/test_bundle.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract import quality
from contract.aggregation import aggregate, top_m
from contract.operating import INCONCLUSIVE, NOT_CONSISTENT, STRICT_MAX_FPR, Table, ThreeWay, equal_error_point
from service.config import Settings
from service.errors import Conflict, Invalid
from service.serving.bundle import Bundle, BundleSlot, View
from service.serving.calibration import MODEL_CARD, CalibrationUsed
from service.serving.embedder import Embedder
from service.serving.evidence import EvidenceMap, check_grid, evidence_map
from service.serving.picture import Picture
from service.serving.quality import QualityUsed
from service.serving.strictness import Preset, Strictness, judge, presets
from service.serving.wording import Subject, summary
from service.storage.gallery import Artist, Portfolio, SameWork, Work
from service.storage.schema import DEFAULT_COLLECTION

MAX_K = 50


@dataclass(frozen=True)
class CopyOf:
    """An upload (`image`: its form field) that shows an enrolled work: the same bytes, or the same painting by
    the model's measured similarity (service/storage/gallery.py `same_work`)."""

    image: str
    artist_id: str
    artist_name: str
    work_id: str
    title: str | None
    similarity: float
    identical: bool
    text: str

    @classmethod
    def of(cls, image: str, same: SameWork) -> CopyOf:
        w = same.work
        return cls(
            image,
            w.artist_id,
            same.artist_name,
            w.id,
            w.title,
            round(same.similarity, 4),
            same.identical,
            same.describe(),
        )

    def describe(self) -> str:
        return self.text

    def note(self) -> str:
        """The copy in words for the reply's `summary`: which upload, which enrolled work (by title), whose."""
        field = {"image_a": "Painting A", "image_b": "Painting B"}.get(self.image, "The picture")
        how = "the very same file as" if self.identical else f"the same painting (similarity {self.similarity:.3f}) as"
        work = f"“{self.title}”" if self.title else f"work {self.work_id}"
        return (
            f"{field} is {how} {work} by {self.artist_name}, already enrolled: a known work submitted again is no "
            "evidence about a new one."
        )


@dataclass(frozen=True)
class TopReference:
    work_id: str
    score: float
    catalogue: dict[str, str | None]


@dataclass(frozen=True)
class Decision:
    """A score judged at the strict point (the caller's strictness, else max_fpr 0.01: `match` is `score >=
    threshold`; no strict point — the default one unreachable — leaves threshold and rates None, match False), and
    the three-way verdict from the strict and the equal-error point (`points`), in words (`summary`)."""

    score: float
    threshold: float | None
    match: bool
    expected_fpr: float | None
    expected_fnr: float | None
    rule: str
    model: str
    # one-sided 95 % upper bounds of the expected rates for the pairs behind the table (None: not recorded)
    expected_fpr_upper: float | None = None
    expected_fnr_upper: float | None = None
    images: tuple[str, ...] = ()  # sha256 of the scored uploads, for the audit log
    calibration: CalibrationUsed = MODEL_CARD  # which tables gave the threshold and the expected rates
    evidence: EvidenceMap | None = None  # per-region scores of the query, when asked for (service/serving/evidence.py)
    quality: QualityUsed | None = None  # what the uploads' quality was and which band's rates it picked
    same_work_as: tuple[CopyOf, ...] = ()  # enrolled works the uploads are copies of
    verdict: str = INCONCLUSIVE  # consistent / inconclusive / not_consistent (contract.operating)
    summary: str = ""  # the verdict in words (service/serving/wording.py)
    points: ThreeWay | None = None  # the strict and the equal-error point the verdict was read at


@dataclass(frozen=True)
class Verdict(Decision):
    artist_id: str = ""
    artist_name: str = ""
    portfolio_size: int = 0
    top_references: list[TopReference] = field(default_factory=list)  # best first, with their catalogue entries


@dataclass(frozen=True)
class Candidate:
    artist_id: str
    name: str
    score: float
    references_scored: int


@dataclass(frozen=True)
class OpenSet:
    """identify's answer to "is it by any enrolled artist?": a three-way verdict on the top candidate's score
    (`points` None: no table to read it on, so inconclusive — or no candidate at all)."""

    verdict: str
    summary: str
    score: float | None
    artist_id: str | None
    artist_name: str
    points: ThreeWay | None
    calibration: CalibrationUsed


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    model: str
    open_set: OpenSet
    same_work_as: tuple[CopyOf, ...] = ()
    image: str = ""  # the upload's sha256, for the audit log
    quality: QualityUsed | None = None


def decided(
    bundle: Bundle, score: float, tw: ThreeWay, subject: Subject, copies: tuple[CopyOf, ...] = ()
) -> dict[str, Any]:
    """The fields every decision shares: the score judged at the strict point, with its expected rates, and the
    three-way verdict."""
    verdict = tw.verdict(score)
    op = tw.strict
    at = (
        dict(
            threshold=op.threshold,
            match=score >= op.threshold,
            expected_fpr=op.fpr,
            expected_fnr=op.fnr,
            expected_fpr_upper=op.fpr_upper,
            expected_fnr_upper=op.fnr_upper,
            rule=op.rule,
        )
        if op is not None
        else dict(
            threshold=None,
            match=False,
            expected_fpr=None,
            expected_fnr=None,
            expected_fpr_upper=None,
            expected_fnr_upper=None,
            rule=f"max_fpr<={STRICT_MAX_FPR:g} unreachable, nothing is called a match: {tw.unreachable}",
        )
    )
    return dict(
        score=score,
        **at,
        model=bundle.model_id,
        verdict=verdict,
        summary=" ".join([summary(verdict, tw, score, subject), *(c.note() for c in copies)]),
        points=tw,
    )


def region_threshold(tw: ThreeWay) -> float:
    """What an evidence map's regions are judged at: the strict point, or without one the equal-error point."""
    return tw.strict.threshold if tw.strict is not None else tw.equal_error.threshold


def require_index(view: View) -> None:
    """After bringing the collection's index up to date with other processes' writes (a `reindex` run beside the
    server included): 409 `reindex_required` while its enrolled works lack embeddings of the bundle's model."""
    view.gallery.sync()
    if view.gallery.reindex_required:
        raise Conflict(
            "reindex_required",
            f"{view.gallery.missing} enrolled works have no embedding for model {view.model_id}; "
            "run `python -m service reindex`",
        )


class Scorer:
    def __init__(
        self, bundles: BundleSlot, embedder: Embedder, settings: Settings, collection: str = DEFAULT_COLLECTION
    ):
        self.bundles = bundles
        self.embedder = embedder
        self.settings = settings
        self.collection = collection

    async def _view(self, b: Bundle) -> View:
        return await asyncio.to_thread(b.view, self.collection)

    async def _pictures(self, b: Bundle, *uploads: bytes) -> list[Picture]:
        """Uploads → quality-checked (422 below the floor) and embedded `Picture`s, in the order given: from the
        bundle's embedding cache for this collection when it holds them, else decoded and embedded, the misses in a
        canonical order (by sha256) so compare(a, b) and compare(b, a) run the very same batch
        (`Embedder.pictures`)."""
        return await self.embedder.pictures(b, self.collection, uploads)

    async def _evidence(
        self,
        b: Bundle,
        query: Picture,
        data: bytes,
        grid: int,
        score: Callable[[list[np.ndarray]], list[float]],
        threshold: float,
        target: str,
    ) -> EvidenceMap:
        """The query's evidence map: pooled from its crops (`data`, the upload, is decoded again only for a recipe
        whose crop grid is coarser than the map: service/serving/evidence.py)."""
        return await evidence_map(
            query,
            grid,
            crop_grid=b.model.card.backbone.preprocessing.grid,
            score=score,
            threshold=threshold,
            target=target,
            decode=lambda: self.embedder.decode(data).image,
            prepare=b.model.model_inputs,
            embed=lambda x: self.embedder.embed(b, x),
        )

    async def compare(
        self, image_a: bytes, image_b: bytes, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Decision:
        """Pair score of two uploads. `evidence=n` adds an n×n evidence map of image_a against image_b."""
        grid = None if evidence is None else check_grid(evidence)
        b = self.bundles.current
        v = await self._view(b)
        pa, pb = await self._pictures(b, image_a, image_b)
        qa, qb = pa.quality, pb.quality
        pair_q = None if qa.score is None or qb.score is None else float(quality.pair_quality(qa.score, qb.score))
        band = b.quality.band(pair_q, "the pair", (qa, qb))
        table, recommended, used = v.pair_calibration(band)
        tw = judge(table, strictness or Strictness(), recommended)
        sa, sb = pa.sha256, pb.sha256
        va, vb, score = await asyncio.to_thread(_pair, b, pa.embedding, pb.embedding)
        copies = await asyncio.to_thread(_copies, v, [("image_a", sa, va), ("image_b", sb, vb)])
        emap = None
        if grid is not None:

            def against_b(embs: list[np.ndarray]) -> list[float]:
                regions = b.model.reference_vectors(np.stack(embs))
                return [float(s) for s in b.model.score_against(vb, regions)]

            emap = await self._evidence(b, pa, image_a, grid, against_b, region_threshold(tw), "image_b")
        return Decision(
            **decided(b, score, tw, Subject.pair(), copies),
            images=(sa, sb),
            calibration=used,
            evidence=emap,
            quality=b.quality.used(pair_q, band, (qa, qb)),
            same_work_as=copies,
        )

    async def verify(
        self, image: bytes, artist_id: str, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Verdict:
        """Portfolio score of an upload. `evidence=n` adds an n×n evidence map against the same portfolio."""
        grid = None if evidence is None else check_grid(evidence)
        b = self.bundles.current
        v = await self._view(b)
        artist, portfolio = await asyncio.to_thread(_current_portfolio, v, artist_id)  # 409/404 before model work
        n = len(portfolio.work_ids)
        if n == 0:
            raise Conflict("empty_portfolio", f"artist {artist_id!r} has no enrolled works to verify against")
        agg = b.model.card.calibration.aggregation
        (p,) = await self._pictures(b, image)
        band = b.quality.band(p.quality.score, "the picture", (p.quality,))
        query = b.model.reference_vectors(p.embedding[None])[0]
        copies = await asyncio.to_thread(_copies, v, [("image", p.sha256, query)])
        # a copy of one of this portfolio's own works is judged against the others (as the calibration's
        # leave-one-out trials are): a known work re-submitted is no evidence about itself
        keep = [i for i, w in enumerate(portfolio.work_ids) if not any(c.work_id == w for c in copies)]
        if not keep:
            raise Conflict(
                "empty_portfolio",
                f"the picture is {copies[0].describe()}, the only work of {artist_id!r}: nothing else to judge it by",
            )
        work_ids, vectors = [portfolio.work_ids[i] for i in keep], portfolio.vectors[keep]
        n = len(work_ids)
        table, recommended, used = v.portfolio_calibration(n, band)
        tw = judge(table, strictness or Strictness(), recommended)
        scores = await asyncio.to_thread(b.model.score_against, query, vectors)
        score = aggregate(scores, agg)
        top = top_m(scores, agg)
        emap = None
        if grid is not None:

            def against_portfolio(embs: list[np.ndarray]) -> list[float]:
                return [aggregate(_score_portfolio(b, e, vectors), agg) for e in embs]

            emap = await self._evidence(b, p, image, grid, against_portfolio, region_threshold(tw), "portfolio")
        works = await asyncio.to_thread(v.gallery.works, [work_ids[i] for i in top])
        return Verdict(
            **decided(b, score, tw, Subject.portfolio(artist.name, n), copies),
            images=(p.sha256,),
            calibration=used,
            evidence=emap,
            quality=b.quality.used(p.quality.score, band, (p.quality,)),
            same_work_as=copies,
            artist_id=artist_id,
            artist_name=artist.name,
            portfolio_size=n,
            top_references=[
                TopReference(work_ids[i], float(scores[i]), _catalogue(works.get(work_ids[i]))) for i in top
            ],
        )

    async def identify(self, image: bytes, k: int = 5) -> Identification:
        """Rank enrolled artists for an image: faiss shortlist of references, then each shortlisted artist's
        whole portfolio rescored by the head and aggregated as in verify (a copy of an enrolled work left out of
        its portfolio, as verify does). Fewer than k candidates when the shortlist holds fewer artists; an empty
        gallery gives an empty list. Besides the ranking, the open-set decision: does the painting belong to any
        enrolled artist at all, read from the top candidate's score on the gallery's leave-one-out identify
        trials (`Bundle.open_set_calibration`) as a three-way verdict."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise Invalid("invalid_k", f"k must be an integer between 1 and {MAX_K}, not {k!r}")
        b = self.bundles.current
        v = await self._view(b)
        await asyncio.to_thread(require_index, v)
        (p,) = await self._pictures(b, image)
        band = b.quality.band(p.quality.score, "the picture", (p.quality,))
        query = b.model.reference_vectors(p.embedding[None])[0]
        copies = await asyncio.to_thread(_copies, v, [("image", p.sha256, query)])
        ranked = await asyncio.to_thread(self._rank, v, query, k, {c.work_id for c in copies})
        table, used = v.open_set_calibration(band)
        return Identification(
            candidates=ranked,
            model=b.model_id,
            open_set=_open_set(table, used, ranked[0] if ranked else None, copies),
            same_work_as=copies,
            image=p.sha256,
            quality=b.quality.used(p.quality.score, band, (p.quality,)),
        )

    async def presets(self, route: str, artist_id: str | None = None) -> Presets:
        """Which strictness presets the calibration can reach for `route` ("compare", or "verify" against
        `artist_id`'s portfolio as it is now), for pictures of the top quality band: the page offers only these."""
        b = self.bundles.current
        v = await self._view(b)
        if route == "compare":
            table, recommended, used = v.pair_calibration(b.quality.top_band)
            n = None
        elif route == "verify":
            if not artist_id:
                raise Invalid("invalid_request", "artist_id: the presets of verify are those of an artist's portfolio")
            _, portfolio = await asyncio.to_thread(_current_portfolio, v, artist_id)
            n = len(portfolio.work_ids)
            table, recommended, used = v.portfolio_calibration(max(n, 1), b.quality.top_band)
        else:
            raise Invalid("invalid_request", f"route must be compare or verify, not {route!r}")
        return Presets(route, presets(table), judge(table, Strictness(), recommended), used, n)

    def _rank(self, v: View, query: np.ndarray, k: int, leave_out: set[str]) -> list[Candidate]:
        b = v.bundle
        v.gallery.sync()
        hits = v.gallery.search(query, self.settings.identify_shortlist + len(leave_out))
        artists = list(dict.fromkeys(h.artist_id for h in hits if h.work_id not in leave_out))
        agg = b.model.card.calibration.aggregation
        scored: list[tuple[float, str, int]] = []
        for artist_id in artists:
            p = v.gallery.portfolio(artist_id)
            rows = [i for i, w in enumerate(p.work_ids) if w not in leave_out]
            if not rows:  # deleted since the search
                continue
            scores = b.model.score_against(query, p.vectors[rows])
            scored.append((aggregate(scores, agg), artist_id, len(rows)))
        scored.sort(key=lambda t: (-t[0], t[1]))
        names = v.gallery.artist_names([a for _, a, _ in scored[:k]])
        return [Candidate(a, names.get(a, ""), s, n) for s, a, n in scored[:k] if a in names]


@dataclass(frozen=True)
class Presets:
    """The strictness presets a caller may offer for `route` today: each on the table a top-quality picture would
    be judged by (the gallery's own or the card's, as a request would choose), with the default verdict's points."""

    route: str
    presets: list[Preset]
    points: ThreeWay
    calibration: CalibrationUsed
    portfolio_size: int | None = None


def _open_set(table: Table | None, used: CalibrationUsed, top: Candidate | None, copies: tuple[CopyOf, ...]) -> OpenSet:
    """Whether the painting belongs to any enrolled artist, from the top candidate's score."""
    note = "".join(f" {c.note()}" for c in copies)
    if top is None:
        return OpenSet(NOT_CONSISTENT, "No enrolled artist has reference works." + note, None, None, "", None, used)
    if table is None:
        says = (
            f"Inconclusive: the closest enrolled artist is {top.name} (score {top.score:.3f}), but whether the "
            f"painting belongs to any enrolled artist cannot be told here: {used.reason}.{note}"
        )
        return OpenSet(INCONCLUSIVE, says, top.score, top.artist_id, top.name, None, used)
    default = equal_error_point(table.rows, "this gallery's leave-one-out identify trials")
    tw = judge(table, Strictness(), default)
    verdict = tw.verdict(top.score)
    says = summary(verdict, tw, top.score, Subject.gallery(top.name)) + note
    return OpenSet(verdict, says, top.score, top.artist_id, top.name, tw, used)


def _pair(b: Bundle, ea: np.ndarray, eb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The two embeddings' reference vectors and their pair score."""
    va, vb = b.model.reference_vectors(np.stack([ea, eb]))
    return va, vb, float(b.model.symmetric_scores(va[None], vb[None])[0])


def _copies(v: View, uploads: list[tuple[str, str, np.ndarray]]) -> tuple[CopyOf, ...]:
    """Which enrolled works of the view's collection the uploads (field name, sha256, reference vector) are
    copies of; another collection's works are never looked at."""
    found = []
    for image, sha, ref in uploads:
        same = v.gallery.same_work(sha, ref)
        if same is not None:
            found.append(CopyOf.of(image, same))
    return tuple(found)


def _catalogue(work: Work | None) -> dict[str, str | None]:
    return work.catalogue if work is not None else {}


def _current_portfolio(v: View, artist_id: str) -> tuple[Artist, Portfolio]:
    require_index(v)
    return v.gallery.get_artist(artist_id), v.gallery.portfolio(artist_id)


def _score_portfolio(b: Bundle, emb: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return b.model.score_against(b.model.reference_vectors(emb[None])[0], vectors)
