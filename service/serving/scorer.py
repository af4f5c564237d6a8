"""Scoring: compare, verify, identify. No HTTP here.

`Scorer` answers with dataclasses (`Decision`, `Verdict`, `Candidate`) the routes turn into JSON; every
caller-caused failure is a domain exception (service/errors.py) or a contract `ImageError` for a bad picture,
mapped to HTTP by service/api/errors.py. Each call takes the serving bundle once (`BundleSlot.current`,
service/serving/bundle.py) and uses only that bundle to the end — its model, gallery, calibrator and quality
rules — so a reply never mixes two models, whatever an upgrade swaps meanwhile. The path: bytes → decode and
quality (service/serving/embedder.py) → backbone through the micro-batcher → reference vectors → head scores →
`contract.aggregation` and service/serving/strictness.py → decision. Before reading the index, verify and identify
bring it up to date with other replicas' writes (`Gallery.sync`). `evidence=n` sends regions of the decoded query
down the same path (service/serving/evidence.py). Covered by tests/service/test_engine.py and
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
from contract.decode import Decoded
from contract.operating import INCONCLUSIVE, STRICT_MAX_FPR, ThreeWay
from service.config import Settings
from service.errors import Conflict, Invalid
from service.serving.bundle import Bundle, BundleSlot
from service.serving.calibration import MODEL_CARD, CalibrationUsed
from service.serving.embedder import Embedder
from service.serving.evidence import EvidenceMap, check_grid, evidence_map
from service.serving.quality import QualityUsed
from service.serving.strictness import Strictness, judge
from service.serving.wording import Subject, summary
from service.storage.gallery import Artist, Portfolio

MAX_K = 50


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
    verdict: str = INCONCLUSIVE  # consistent / inconclusive / not_consistent (contract.operating)
    summary: str = ""  # the verdict in words (service/serving/wording.py)
    points: ThreeWay | None = None  # the strict and the equal-error point the verdict was read at


@dataclass(frozen=True)
class Verdict(Decision):
    artist_id: str = ""
    artist_name: str = ""
    portfolio_size: int = 0
    top_references: list[tuple[str, float]] = field(default_factory=list)  # (work id, pair score), best first


@dataclass(frozen=True)
class Candidate:
    artist_id: str
    name: str
    score: float
    references_scored: int


def decided(bundle: Bundle, score: float, tw: ThreeWay, subject: Subject) -> dict[str, Any]:
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
        summary=summary(verdict, tw, score, subject),
        points=tw,
    )


def region_threshold(tw: ThreeWay) -> float:
    """What an evidence map's regions are judged at: the strict point, or without one the equal-error point."""
    return tw.strict.threshold if tw.strict is not None else tw.equal_error.threshold


def require_index(bundle: Bundle) -> None:
    """After bringing the index up to date with other processes' writes (a `reindex` run beside the server
    included): 409 `reindex_required` while enrolled works lack embeddings of the bundle's model."""
    bundle.gallery.sync()
    if bundle.gallery.reindex_required:
        raise Conflict(
            "reindex_required",
            f"{bundle.gallery.missing} enrolled works have no embedding for model {bundle.model_id}; "
            "run `python -m service reindex`",
        )


class Scorer:
    def __init__(self, bundles: BundleSlot, embedder: Embedder, settings: Settings):
        self.bundles = bundles
        self.embedder = embedder
        self.settings = settings

    async def _evidence(
        self,
        b: Bundle,
        decoded: Decoded,
        grid: int,
        score: Callable[[list[np.ndarray]], list[float]],
        threshold: float,
        target: str,
    ) -> EvidenceMap:
        return await evidence_map(
            decoded.image,
            grid,
            prepare=b.model.model_inputs,
            embed=lambda x: self.embedder.embed(b, x),
            score=score,
            threshold=threshold,
            target=target,
        )

    async def compare(
        self, image_a: bytes, image_b: bytes, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Decision:
        """Pair score of two uploads. `evidence=n` adds an n×n evidence map of image_a against image_b."""
        grid = None if evidence is None else check_grid(evidence)
        b = self.bundles.current
        pa, pb = await asyncio.gather(
            asyncio.to_thread(self.embedder.prepare, b, image_a), asyncio.to_thread(self.embedder.prepare, b, image_b)
        )
        qa, qb = pa.quality, pb.quality
        pair_q = None if qa.score is None or qb.score is None else float(quality.pair_quality(qa.score, qb.score))
        band = b.quality.band(pair_q, "the pair", (qa, qb))
        table, recommended, used = b.pair_calibration(band)
        tw = judge(table, strictness or Strictness(), recommended)
        sa, sb = pa.sha256, pb.sha256
        # submitted in a canonical order so compare(a, b) and compare(b, a) run the very same batch
        first, second = (pa.inputs, pb.inputs) if sa <= sb else (pb.inputs, pa.inputs)
        e1, e2 = await asyncio.gather(self.embedder.embed(b, first), self.embedder.embed(b, second))
        score = float(await asyncio.to_thread(_pair_score, b, e1, e2))
        emap = None
        if grid is not None:
            other = b.model.reference_vectors((e2 if sa <= sb else e1)[None])[0]

            def against_b(embs: list[np.ndarray]) -> list[float]:
                regions = b.model.reference_vectors(np.stack(embs))
                return [float(s) for s in b.model.score_against(other, regions)]

            emap = await self._evidence(b, pa.decoded, grid, against_b, region_threshold(tw), "image_b")
        return Decision(
            **decided(b, score, tw, Subject.pair()),
            images=(sa, sb),
            calibration=used,
            evidence=emap,
            quality=b.quality.used(pair_q, band, (qa, qb)),
        )

    async def verify(
        self, image: bytes, artist_id: str, strictness: Strictness | None = None, evidence: int | None = None
    ) -> Verdict:
        """Portfolio score of an upload. `evidence=n` adds an n×n evidence map against the same portfolio."""
        grid = None if evidence is None else check_grid(evidence)
        b = self.bundles.current
        artist, portfolio = await asyncio.to_thread(_current_portfolio, b, artist_id)  # 409/404 before model work
        n = len(portfolio.work_ids)
        if n == 0:
            raise Conflict("empty_portfolio", f"artist {artist_id!r} has no enrolled works to verify against")
        agg = b.model.card.calibration.aggregation
        p = await asyncio.to_thread(self.embedder.prepare, b, image)
        band = b.quality.band(p.quality.score, "the picture", (p.quality,))
        table, recommended, used = b.portfolio_calibration(n, band)
        tw = judge(table, strictness or Strictness(), recommended)
        emb = await self.embedder.embed(b, p.inputs)
        scores = await asyncio.to_thread(_score_portfolio, b, emb, portfolio.vectors)
        score = aggregate(scores, agg)
        top = top_m(scores, agg)
        emap = None
        if grid is not None:

            def against_portfolio(embs: list[np.ndarray]) -> list[float]:
                return [aggregate(_score_portfolio(b, e, portfolio.vectors), agg) for e in embs]

            emap = await self._evidence(b, p.decoded, grid, against_portfolio, region_threshold(tw), "portfolio")
        return Verdict(
            **decided(b, score, tw, Subject.portfolio(artist.name, n)),
            images=(p.sha256,),
            calibration=used,
            evidence=emap,
            quality=b.quality.used(p.quality.score, band, (p.quality,)),
            artist_id=artist_id,
            artist_name=artist.name,
            portfolio_size=n,
            top_references=[(portfolio.work_ids[i], float(scores[i])) for i in top],
        )

    async def identify(self, image: bytes, k: int = 5) -> tuple[list[Candidate], str]:
        """Rank enrolled artists for an image: faiss shortlist of references, then each shortlisted artist's
        whole portfolio rescored by the head and aggregated as in verify. Fewer than k candidates when the
        shortlist holds fewer artists; an empty gallery gives an empty list. Returns the ranking and the id of
        the model that made it."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise Invalid("invalid_k", f"k must be an integer between 1 and {MAX_K}, not {k!r}")
        b = self.bundles.current
        await asyncio.to_thread(require_index, b)
        emb, _ = await self.embedder.embed_upload(b, image)
        return await asyncio.to_thread(self._rank, b, emb, k), b.model_id

    def _rank(self, b: Bundle, emb: np.ndarray, k: int) -> list[Candidate]:
        query = b.model.reference_vectors(emb[None])[0]
        b.gallery.sync()
        hits = b.gallery.search(query, self.settings.identify_shortlist)
        artists = list(dict.fromkeys(h.artist_id for h in hits))
        agg = b.model.card.calibration.aggregation
        scored: list[tuple[float, str, int]] = []
        for artist_id in artists:
            p = b.gallery.portfolio(artist_id)
            if not p.work_ids:  # deleted since the search
                continue
            scores = b.model.score_against(query, p.vectors)
            scored.append((aggregate(scores, agg), artist_id, len(p.work_ids)))
        scored.sort(key=lambda t: (-t[0], t[1]))
        names = b.gallery.artist_names([a for _, a, _ in scored[:k]])
        return [Candidate(a, names.get(a, ""), s, n) for s, a, n in scored[:k] if a in names]


def _pair_score(b: Bundle, ea: np.ndarray, eb: np.ndarray) -> float:
    va, vb = b.model.reference_vectors(np.stack([ea, eb]))
    return float(b.model.symmetric_scores(va[None], vb[None])[0])


def _current_portfolio(b: Bundle, artist_id: str) -> tuple[Artist, Portfolio]:
    require_index(b)
    return b.gallery.get_artist(artist_id), b.gallery.portfolio(artist_id)


def _score_portfolio(b: Bundle, emb: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return b.model.score_against(b.model.reference_vectors(emb[None])[0], vectors)
