"""Error rates that hold on the caller's own paintings: calibration tables derived from the enrolled gallery.

The model card's tables describe the paintings the model was evaluated on. Once the gallery holds at least
`min_artists` artists with two or more works each, its own works are better evidence about the caller's
paintings: genuine scores are pairs of works by one artist (and, for verify, each work against the rest of its
artist's portfolio, leave-one-out), impostor scores pairs of works by different artists (each work against
another artist's whole portfolio). The tables are built by `contract.calibration.threshold_table`, the same
function that built the card's, over bounded random samples so a large gallery costs bounded time.

`GalleryCalibrator` belongs to one serving bundle (service/serving/bundle.py): it reads that bundle's gallery and
scores with that bundle's model, and its tables say which model made them (`GalleryTables.model_id`). It keeps them
current off the request path: a request reports the gallery version it saw
(`poke`); when that differs from the tables' version, one background thread rebuilds them from a snapshot while
requests go on using the previous tables (or the card's, until the first tables exist).

The gallery's tables take over from the card's only when they are at least as certain (`choose`): their
same-artist and different-artist counts each at least the card's effective counts for that level, so every bound
they give is at least as tight as the card's would be at the same observed rate. A card that does not record
its counts (older cards) cannot be compared: there the gallery's counted tables are preferred, since only they
can say how sure they are. Every reply names the tables it used, their counts and confidence, and why
(`CalibrationUsed`). Covered by tests/service/test_calibration.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from contract.aggregation import aggregate
from contract.calibration import threshold_table
from contract.card import Aggregation, CalibrationRow
from contract.operating import Table

log = logging.getLogger(__name__)

MIN_ARTISTS = 5  # artists with >= MIN_WORKS works before the gallery calibrates itself
MIN_WORKS = 2
MAX_PAIRS = 200_000  # impostor pairs sampled for the pair table (genuine pairs likewise bounded)
MAX_QUERIES = 400  # leave-one-out verify queries sampled for the portfolio table
MAX_IMPOSTOR_PORTFOLIOS = 40  # other artists' portfolios each query is tried against

# rows of a and b (reference vectors) → pair scores [N]
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CalibrationUsed:
    """What a reply says about the tables behind its expected error rates."""

    source: str  # "gallery" or "model_card"
    genuine_pairs: int | None = None  # pairs (compare) or leave-one-out trials (verify) behind the table
    impostor_pairs: int | None = None  # None: the card does not record them (no bounds then)
    confidence: float | None = None  # of the upper bounds in the reply (None: no bounds)
    reason: str = ""  # why this source and not the other
    model: str = ""  # the model whose scores the table holds: the card's model, or the one the gallery was scored by

    @classmethod
    def of(cls, source: str, table: Table, reason: str) -> CalibrationUsed:
        return cls(source, table.genuine, table.impostor, table.confidence, reason)


MODEL_CARD = CalibrationUsed("model_card")


def _counts(table: Table) -> str:
    return f"{table.genuine} same-artist / {table.impostor} different-artist {table.unit}"


def choose(card: Table, gallery: Table | None, why_not_gallery: str = "") -> tuple[Table, CalibrationUsed]:
    """The table a decision is judged by — the gallery's only when at least as certain as the card's (see the
    module docstring) — and what the reply says about it. `why_not_gallery`: why there is no gallery table."""
    if gallery is not None:
        if not card.counted:
            why = (
                f"the gallery's own {_counts(gallery)} give confidence bounds; the model card's table does not "
                f"record how many {card.unit} it rests on"
            )
            return gallery, CalibrationUsed.of("gallery", gallery, why)
        g, c = gallery, card
        assert g.genuine is not None and g.impostor is not None and c.genuine is not None and c.impostor is not None
        if g.genuine >= c.genuine and g.impostor >= c.impostor:
            why = f"the gallery's own {_counts(gallery)} are at least as many as the model card's {_counts(card)}"
            return gallery, CalibrationUsed.of("gallery", gallery, why)
        why = (
            f"the gallery's own {_counts(gallery)} are fewer than the model card's {_counts(card)} (each kind "
            "must be at least as many): its rates would be less certain"
        )
        return card, CalibrationUsed.of("model_card", card, why)
    card_note = (
        f"the model card's {_counts(card)}"
        if card.counted
        else f"the model card's table does not record how many {card.unit} it rests on: no confidence bounds"
    )
    return card, CalibrationUsed.of(
        "model_card", card, f"{why_not_gallery}; {card_note}" if why_not_gallery else card_note
    )


@dataclass(frozen=True)
class GalleryTables:
    version: int
    model_id: str  # the model whose scores these are
    artists: int  # artists with >= MIN_WORKS works
    pair: list[CalibrationRow]
    genuine_pairs: int
    impostor_pairs: int
    portfolio: list[CalibrationRow]
    genuine_trials: int
    impostor_trials: int
    # identify's open-set decision: the top candidate's score for a held-out work whose artist is enrolled
    # (genuine) or, its artist removed, is not (impostor)
    open_set: list[CalibrationRow] = field(default_factory=list)
    open_genuine: int = 0
    open_impostor: int = 0

    def open_set_table(self) -> Table:
        return Table(self.open_set, self.open_genuine, self.open_impostor, "trials")

    def pair_table(self) -> Table:
        return Table(self.pair, self.genuine_pairs, self.impostor_pairs, "pairs")

    def portfolio_table(self) -> Table:
        return Table(self.portfolio, self.genuine_trials, self.impostor_trials, "trials")


def eligible_artists(artist_ids: np.ndarray) -> list[str]:
    names, counts = np.unique(np.asarray(artist_ids), return_counts=True)
    return [str(a) for a, c in zip(names, counts, strict=True) if c >= MIN_WORKS]


def build_tables(
    artist_ids: np.ndarray,
    vectors: np.ndarray,
    score_pairs: PairScorer,
    aggregation: Aggregation,
    version: int,
    min_artists: int = MIN_ARTISTS,
    seed: int = 0,
    model_id: str = "",
    shortlist: int = 200,
) -> GalleryTables | None:
    """Tables from the enrolled references (their reference vectors and artists), or None when the gallery is
    too small to speak for itself."""
    artist_ids = np.asarray(artist_ids)
    vectors = np.asarray(vectors, np.float32)
    eligible = eligible_artists(artist_ids)
    if len(eligible) < min_artists or len(np.unique(artist_ids)) < 2:
        return None
    rng = np.random.default_rng(seed)
    rows_of = {a: np.where(artist_ids == a)[0] for a in np.unique(artist_ids)}

    # pair level: every within-artist pair (sampled beyond MAX_PAIRS), sampled cross-artist pairs
    ga, gb = [], []
    for a in eligible:
        r = rows_of[a]
        i, j = np.triu_indices(len(r), 1)
        ga.append(r[i])
        gb.append(r[j])
    gi, gj = np.concatenate(ga), np.concatenate(gb)
    if len(gi) > MAX_PAIRS:
        keep = rng.choice(len(gi), MAX_PAIRS, replace=False)
        gi, gj = gi[keep], gj[keep]
    n = len(artist_ids)
    if n * (n - 1) // 2 <= MAX_PAIRS:  # small gallery: every cross-artist pair, exactly once
        ii, jj = np.triu_indices(n, 1)
        cross = artist_ids[ii] != artist_ids[jj]
        ii, jj = ii[cross], jj[cross]
    else:  # sampled, at most MAX_PAIRS distinct ones: a pair drawn twice would count twice but show no more
        ii, jj = rng.integers(0, n, 4 * MAX_PAIRS), rng.integers(0, n, 4 * MAX_PAIRS)
        cross = artist_ids[ii] != artist_ids[jj]
        ii, jj = ii[cross], jj[cross]
        _, first = np.unique(np.minimum(ii, jj) * n + np.maximum(ii, jj), return_index=True)
        drawn = np.sort(first)[:MAX_PAIRS]  # in the order drawn, not by index
        ii, jj = ii[drawn], jj[drawn]
    genuine = score_pairs(vectors[gi], vectors[gj])
    impostor = score_pairs(vectors[ii], vectors[jj])
    y = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    pair_table = threshold_table(y, np.concatenate([genuine, impostor]))

    # verify level: leave-one-out portfolios, aggregated as verify does
    queries = np.concatenate([rows_of[a] for a in eligible])
    if len(queries) > MAX_QUERIES:
        queries = rng.choice(queries, MAX_QUERIES, replace=False)
    others_all = list(rows_of)
    ts, ty = [], []
    for q in queries:
        own = artist_ids[q]
        refs = rows_of[own]
        portfolios = [refs[refs != q]]
        others = [a for a in others_all if a != own]
        if len(others) > MAX_IMPOSTOR_PORTFOLIOS:
            others = [others[k] for k in rng.choice(len(others), MAX_IMPOSTOR_PORTFOLIOS, replace=False)]
        portfolios += [rows_of[a] for a in others]
        # only the rows these portfolios hold are scored, never the whole gallery per query
        rows = np.concatenate(portfolios)
        scores = score_pairs(np.repeat(vectors[q : q + 1], len(rows), axis=0), vectors[rows])
        start = 0
        for k, p in enumerate(portfolios):
            ts.append(aggregate(scores[start : start + len(p)], aggregation))
            ty.append(k == 0)
            start += len(p)
    ty_arr = np.array(ty)
    portfolio_table = threshold_table(ty_arr, np.array(ts))
    oy, os_ = open_set_trials(artist_ids, vectors, score_pairs, aggregation, rng, shortlist)
    return GalleryTables(
        version=version,
        model_id=model_id,
        artists=len(eligible),
        pair=pair_table,
        genuine_pairs=int(len(genuine)),
        impostor_pairs=int(len(impostor)),
        portfolio=portfolio_table,
        genuine_trials=int(ty_arr.sum()),
        impostor_trials=int((~ty_arr).sum()),
        open_set=threshold_table(oy, os_),
        open_genuine=int(oy.sum()),
        open_impostor=int((~oy).sum()),
    )


def top_candidate(
    query: int,
    artist_ids: np.ndarray,
    vectors: np.ndarray,
    unit: np.ndarray,
    score_pairs: PairScorer,
    aggregation: Aggregation,
    shortlist: int,
    without: str | None = None,
) -> float | None:
    """The best portfolio score of enrolled work `query` held out, as /v1/identify ranks (a shortlist of the
    nearest references by cosine, each shortlisted artist's whole portfolio scored and aggregated), with artist
    `without` not enrolled at all; None when no artist is left."""
    keep = np.ones(len(artist_ids), bool)
    keep[query] = False
    if without is not None:
        keep &= artist_ids != without
    rows = np.nonzero(keep)[0]
    if not len(rows):
        return None
    near = rows[np.argsort(-(unit[rows] @ unit[query]), kind="stable")[:shortlist]]
    best = None
    for a in dict.fromkeys(artist_ids[near].tolist()):
        refs = rows[artist_ids[rows] == a]
        s = aggregate(score_pairs(np.repeat(vectors[query : query + 1], len(refs), axis=0), vectors[refs]), aggregation)
        best = s if best is None else max(best, s)
    return best


def open_set_trials(
    artist_ids: np.ndarray,
    vectors: np.ndarray,
    score_pairs: PairScorer,
    aggregation: Aggregation,
    rng: np.random.Generator,
    shortlist: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine?, top score) of leave-one-out identify trials: each sampled work against the gallery without it
    (genuine, when its artist keeps at least one other work) and against the gallery without its artist
    (impostor: a painting by an artist not enrolled)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    queries = np.arange(len(artist_ids))
    if len(queries) > MAX_QUERIES:
        queries = rng.choice(queries, MAX_QUERIES, replace=False)
    counts = dict(zip(*np.unique(artist_ids, return_counts=True), strict=True))
    y, s = [], []
    for q in queries:
        own = artist_ids[q]
        trials = ([None] if counts[own] >= MIN_WORKS else []) + [own]
        for without in trials:
            top = top_candidate(int(q), artist_ids, vectors, unit, score_pairs, aggregation, shortlist, without)
            if top is not None:
                y.append(without is None)
                s.append(top)
    return np.array(y, bool), np.array(s, np.float64)


class GalleryCalibrator:
    """The current gallery tables, rebuilt in a background thread when the gallery's version moves."""

    def __init__(
        self,
        snapshot: Callable[[], tuple[int, np.ndarray, np.ndarray]],
        score_pairs: PairScorer,
        aggregation: Aggregation,
        min_artists: int = MIN_ARTISTS,
        enabled: bool = True,
        model_id: str = "",
        shortlist: int = 200,
    ):
        """`snapshot()` → (version, artist ids, reference vectors) of the gallery, read consistently;
        `score_pairs` the model `model_id`'s symmetric pair scores of reference vectors; `shortlist` identify's."""
        self._snapshot = snapshot
        self.shortlist = shortlist
        self.model_id = model_id
        self.rebuilds = 0  # tables built so far (a bundle's calibrator rebuilds only when its gallery moved)
        self._score_pairs = score_pairs
        self._aggregation = aggregation
        self.min_artists = min_artists
        self.enabled = enabled
        self.tables: GalleryTables | None = None
        self._built_version: int | None = None  # also set when the gallery was too small
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def why_none(self) -> str:
        """Why a reply has no gallery tables, for `CalibrationUsed.reason`. The same words whether or not the
        background build has run yet, so an answer does not depend on that timing."""
        return (
            f"the gallery has no calibration tables of its own: they need {self.min_artists} artists with "
            f"{MIN_WORKS} or more works and are built in the background once it has them"
        )

    @property
    def built_version(self) -> int | None:
        """The gallery version the last build read (None before the first)."""
        return self._built_version

    def poke(self, version: int) -> None:
        """Called on the request path: start a rebuild if the tables are older than `version` (never waits)."""
        if not self.enabled or version == self._built_version:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._rebuild, name="gallery-calibration", daemon=True)
            self._thread.start()

    def refresh(self) -> GalleryTables | None:
        """Rebuild now, in the caller's thread (CLI, tests)."""
        self._rebuild()
        return self.tables

    def wait(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _rebuild(self) -> None:
        try:
            version, artist_ids, vectors = self._snapshot()
            tables = build_tables(
                artist_ids,
                vectors,
                self._score_pairs,
                self._aggregation,
                version,
                min_artists=self.min_artists,
                model_id=self.model_id,
                shortlist=self.shortlist,
            )
        except Exception:  # a failed rebuild leaves the previous tables; the next write tries again
            log.exception("gallery calibration failed")
            return
        self.tables = tables
        self._built_version = version
        self.rebuilds += 1
        if tables is not None:
            log.info(
                "gallery calibration v%d: %d artists, %d genuine / %d impostor pairs",
                version,
                tables.artists,
                tables.genuine_pairs,
                tables.impostor_pairs,
            )
