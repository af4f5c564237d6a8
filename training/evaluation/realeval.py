"""Honest figures on real paintings: artist-disjoint cross-validation of the cosine head, with artist-bootstrap CIs.

The learned parts of a cosine model (the whitening, fitted on crops of real paintings without labels, and the
logistic map cosine → probability) are fitted on some artists and judged on others, never on works they saw:

- `oof_scores`: artists split at random into `folds` groups; each group's pairs are scored by a whitening
  fitted on the crops of the other groups. Repeated with `repeats` seeds; every repeat gives out-of-fold cosines
  for the within-fold pairs (pairs across folds would compare vectors of two different whitenings).
- the logistic calibration is fitted on those out-of-fold cosines; it is monotone, so it changes no AUC.
- `verify_trials`: leave-one-out verification inside each fold: a work against the rest of its artist's
  portfolio (genuine) and against every other artist's whole portfolio in the fold (impostor), aggregated as
  the service does (contract.aggregation).
- `nested_operating_points`: the whole recipe (inner CV → calibration table and logistic, whitening on all the
  outer-train crops) is fitted on half the artists and its operating points (`max_fpr`, the EER default),
  chosen by the service's own rule (contract.operating), are checked on the other half: claimed (with the
  claim's 95 % upper bound) against observed FPR/FNR.
- `bootstrap_ci`: artists resampled with replacement, each pair weighted by the product of its two artists'
  multiplicities (a cluster bootstrap: pairs share paintings, so resampling pairs would understate the spread).

Small sets give wide intervals; the report says so. Covered by tests/training/test_realeval.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from contract.aggregation import aggregate
from contract.calibration import sample_size, threshold_table
from contract.card import Aggregation
from contract.operating import OperatingPoint, Table, Unreachable
from contract.operating import operating_point as choose_point
from training.heads.cosine import CosineHead, Whitening, fit_calibration, fit_whitening, l2

OPERATING_POINTS = (("max_fpr", 0.01), ("max_fpr", 0.05), ("max_fpr", 0.10), ("default", None))


@dataclass(frozen=True)
class Pairs:
    """Scored pairs: image indices, same-artist flags, scores (and which repeat they came from)."""

    ia: np.ndarray
    ib: np.ndarray
    same: np.ndarray
    score: np.ndarray
    repeat: np.ndarray

    def select(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.ia[keep], self.ib[keep], self.same[keep], self.score[keep], self.repeat[keep])

    def with_scores(self, score: np.ndarray) -> Pairs:
        return Pairs(self.ia, self.ib, self.same, np.asarray(score, np.float64), self.repeat)


def artist_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per image, artists assigned at random (every work of an artist in one fold)."""
    artists = np.unique(labels)
    order = np.random.default_rng(seed).permutation(artists)
    fold_of = {a: i % folds for i, a in enumerate(order)}
    return np.array([fold_of[a] for a in labels])


def _within(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.triu_indices(len(idx), 1)
    return idx[a], idx[b]


def project(whitening: Whitening, emb: np.ndarray) -> np.ndarray:
    return l2((np.asarray(emb, np.float64) - whitening.mean) @ whitening.matrix)


def fit_on(crops: Sequence[np.ndarray], idx: np.ndarray, dim: int, power: float) -> Whitening:
    return fit_whitening(np.concatenate([crops[i] for i in idx]), dim=dim, power=power)


def oof_scores(
    crops: Sequence[np.ndarray],
    emb: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 2,
    repeats: int = 10,
    seed: int = 0,
    dim: int = 64,
    power: float = -0.5,
    whiten: bool = True,
    csls_k: int | None = None,
    fit_on_scored: bool = False,
) -> tuple[Pairs, list[np.ndarray]]:
    """Out-of-fold cosines of within-fold pairs over `repeats` random artist splits, and the fold assignments.

    Variants measured as candidates: `csls_k` re-scores each pair by CSLS against the fold's other works as the
    cohort (2·cos − r_a − r_b, r = mean cosine to the k nearest cohort works: what a gallery cohort would do);
    `fit_on_scored` fits the whitening on the scored fold's own crops instead (unlabelled adaptation to a
    caller's gallery: no labels are used, but the works scored are the works fitted on)."""
    parts: list[tuple[np.ndarray, ...]] = []
    assignments = []
    for r in range(repeats):
        fold = artist_folds(labels, folds, seed + r)
        assignments.append(fold)
        for f in range(folds):
            test = np.where(fold == f)[0]
            train = np.where(fold != f)[0]
            fit_idx = test if fit_on_scored else train
            vec = project(fit_on(crops, fit_idx, dim, power), emb[test]) if whiten else l2(emb[test])
            a, b = np.triu_indices(len(test), 1)
            cos = np.sum(vec[a] * vec[b], axis=1)
            if csls_k:
                sim = vec @ vec.T
                np.fill_diagonal(sim, -np.inf)
                k = min(csls_k, len(test) - 1)
                near = np.sort(sim, axis=1)[:, -k:].mean(axis=1)
                cos = 2 * cos - near[a] - near[b]
            ia, ib = test[a], test[b]
            parts.append((ia, ib, labels[ia] == labels[ib], cos, np.full(len(ia), r)))
    cat = [np.concatenate(p) for p in zip(*parts, strict=True)]
    return Pairs(*cat), assignments


def auc_eer(same: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float, float]:
    """(ROC AUC, EER, the score threshold at the EER point)."""
    fpr, tpr, thr = roc_curve(same, score, sample_weight=weight)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float(roc_auc_score(same, score, sample_weight=weight)), float((fpr[i] + fnr[i]) / 2), float(thr[i])


def bootstrap_ci(
    pairs: Pairs,
    labels: np.ndarray,
    stat: Callable[[Pairs, np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    both_classes: bool = True,
) -> tuple[float, float]:
    """95 % interval of `stat(pairs, weights)` when artists are resampled with replacement (NaN when no resample
    could be scored). `both_classes`: skip resamples without both same- and different-artist pairs (an AUC
    needs both; a rate over one class does not)."""
    artists, inverse = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        counts = np.bincount(rng.integers(0, len(artists), len(artists)), minlength=len(artists)).astype(np.float64)
        w = counts[inverse[pairs.ia]] * counts[inverse[pairs.ib]]
        keep = w > 0
        if not keep.any() or (both_classes and pairs.same[keep].min() == pairs.same[keep].max()):
            continue
        values.append(stat(pairs.select(keep), w[keep]))
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def pair_metrics(pairs: Pairs, labels: np.ndarray, n_boot: int = 1000) -> dict:
    auc, eer, _ = auc_eer(pairs.same, pairs.score)
    return {
        "auc": auc,
        "auc_ci95": bootstrap_ci(pairs, labels, lambda p, w: auc_eer(p.same, p.score, w)[0], n_boot),
        "eer": eer,
        "eer_ci95": bootstrap_ci(pairs, labels, lambda p, w: auc_eer(p.same, p.score, w)[1], n_boot),
        "pairs_per_repeat": int(len(pairs.same) / max(1, len(np.unique(pairs.repeat)))),
        "same_artist_pairs_per_repeat": int(pairs.same.sum() / max(1, len(np.unique(pairs.repeat)))),
        "repeats": int(len(np.unique(pairs.repeat))),
    }


def verify_trials(
    pairs: Pairs, labels: np.ndarray, aggregation: Aggregation
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out verification from scored within-fold pairs: (portfolio score, genuine?, query artist)."""
    out_s, out_y, out_q = [], [], []
    for r in np.unique(pairs.repeat):
        p = pairs.select(pairs.repeat == r)
        score: dict[tuple[int, int], float] = {}
        for a, b, s in zip(p.ia, p.ib, p.score, strict=True):
            score[(a, b)] = score[(b, a)] = float(s)
        members: dict[int, list[int]] = {}
        for i in np.unique(np.concatenate([p.ia, p.ib])):
            members.setdefault(int(labels[i]), []).append(int(i))
        for q_artist, works in members.items():
            if len(works) < 2:
                continue
            for q in works:
                for artist, refs in members.items():
                    refs = [x for x in refs if x != q and (q, x) in score]  # same fold only
                    if not refs:
                        continue
                    s = aggregate(np.array([score[(q, x)] for x in refs]), aggregation)
                    out_s.append(s)
                    out_y.append(artist == q_artist)
                    out_q.append(q_artist)
    return np.array(out_s), np.array(out_y), np.array(out_q)


def verify_metrics(scores: np.ndarray, genuine: np.ndarray, query_artist: np.ndarray, n_boot: int = 1000) -> dict:
    auc = float(roc_auc_score(genuine, scores))
    artists, inverse = np.unique(query_artist, return_inverse=True)
    rng = np.random.default_rng(1)
    values = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(artists), len(artists)), minlength=len(artists))
        w = counts[inverse].astype(np.float64)
        if w[genuine].sum() == 0 or w[~genuine].sum() == 0:
            continue
        values.append(roc_auc_score(genuine, scores, sample_weight=w))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {
        "auc": auc,
        "auc_ci95": (float(lo), float(hi)),
        "genuine_trials": int(genuine.sum()),
        "impostor_trials": int((~genuine).sum()),
        "query_artists": int(len(artists)),
    }


def operating_point(table: Table, kind: str, value: float | None) -> OperatingPoint:
    """The point the service picks on the same table (contract.operating, the one rule): `max_fpr` on the FPR
    upper bound, `default` the equal-error row. Raises `Unreachable` where the service answers 422."""
    if kind == "max_fpr":
        assert value is not None
        return choose_point(table, max_fpr=value)
    return choose_point(table)


def counted_table(y: np.ndarray, s: np.ndarray, repeats: int, unit: str = "pairs") -> Table:
    """The calibration table of scores pooled over `repeats` CV repeats, with its effective counts (per repeat)."""
    n = sample_size(y, repeats)
    return Table(threshold_table(y, s, counts=n), n.genuine, n.impostor, unit)


def fit_cosine_model(
    crops: Sequence[np.ndarray],
    emb: np.ndarray,
    labels: np.ndarray,
    idx: np.ndarray,
    *,
    folds: int,
    repeats: int,
    seed: int,
    dim: int,
    power: float,
    aggregation: Aggregation,
) -> tuple[CosineHead, Pairs, Table, Table]:
    """The whole recipe on images `idx`: inner CV → logistic map and calibration tables (pair, portfolio) from
    out-of-fold scores, with their effective counts; whitening on all their crops. Returns (head, OOF
    probability pairs, tables)."""
    sub_labels = labels[idx]
    sub_crops = [crops[i] for i in idx]
    pairs, _ = oof_scores(
        sub_crops, emb[idx], sub_labels, folds=folds, repeats=repeats, seed=seed, dim=dim, power=power
    )
    slope, bias = fit_calibration(pairs.score, pairs.same)
    head = CosineHead(fit_on(sub_crops, np.arange(len(idx)), dim, power), slope, bias)
    prob = pairs.with_scores(head.probability(pairs.score))
    pair_table = counted_table(prob.same, prob.score, repeats)
    vs, vy, _ = verify_trials(prob, sub_labels, aggregation)
    portfolio_table = counted_table(vy, vs, repeats, "trials")
    return head, prob, pair_table, portfolio_table


def nested_operating_points(
    crops: Sequence[np.ndarray],
    emb: np.ndarray,
    labels: np.ndarray,
    *,
    outer_repeats: int = 5,
    inner_repeats: int = 3,
    seed: int = 100,
    dim: int = 64,
    power: float = -0.5,
    aggregation: Aggregation = Aggregation(),
) -> list[dict]:
    """Claimed (from the fitted half's own tables) against observed (on the other half's artists) error rates,
    for pairs and for leave-one-out verification, at each of OPERATING_POINTS; averaged over halves and repeats."""
    acc: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for r in range(outer_repeats):
        half = artist_folds(labels, 2, seed + r)
        for f in (0, 1):
            fit_idx, test_idx = np.where(half == f)[0], np.where(half != f)[0]
            head, _, pair_table, portfolio_table = fit_cosine_model(
                crops, emb, labels, fit_idx, folds=2, repeats=inner_repeats, seed=seed + 17 * r,
                dim=dim, power=power, aggregation=aggregation,
            )  # fmt: skip
            vec = head.project(emb[test_idx])
            a, b = np.triu_indices(len(test_idx), 1)
            ia, ib = test_idx[a], test_idx[b]
            prob = head.compare(vec[a], vec[b])
            test_pairs = Pairs(ia, ib, labels[ia] == labels[ib], prob, np.zeros(len(ia), int))
            vs, vy, _ = verify_trials(test_pairs, labels, aggregation)
            for level, table, s, y in (
                ("pair", pair_table, test_pairs.score, test_pairs.same),
                ("verify", portfolio_table, vs, vy),
            ):
                for kind, value in OPERATING_POINTS:
                    try:
                        row, reached = operating_point(table, kind, value), 1.0
                    except Unreachable:  # the service answers 422; measured at the table's strictest threshold
                        row, reached = choose_point(table, threshold=table.rows[-1].threshold), 0.0
                    accept = s >= row.threshold
                    observed_fpr = float(accept[~y].mean())
                    observed_fnr = float((~accept[y]).mean())
                    rule = f"{kind}<={value:g}" if value is not None else "default (EER point)"
                    upper = row.fpr_upper if row.fpr_upper is not None else float("nan")
                    acc.setdefault((level, rule), []).append(
                        (row.fpr, observed_fpr, row.fnr, observed_fnr, upper, reached)
                    )
    out = []
    for (level, rule), vals in acc.items():
        v = np.array(vals)
        out.append(
            {
                "level": level,
                "rule": rule,
                "claimed_fpr": float(v[:, 0].mean()),
                "claimed_fpr_upper": float(v[:, 4].mean()),
                "unreachable_halves": int((v[:, 5] == 0).sum()),
                "observed_fpr": float(v[:, 1].mean()),
                "observed_fpr_range": (float(v[:, 1].min()), float(v[:, 1].max())),
                "claimed_fnr": float(v[:, 2].mean()),
                "observed_fnr": float(v[:, 3].mean()),
                "observed_fnr_range": (float(v[:, 3].min()), float(v[:, 3].max())),
                "halves": len(vals),
            }
        )
    return out
