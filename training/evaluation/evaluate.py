"""Honest evaluation of a pair head: metrics on artists it never saw, calibration on validation artists.

- pair level: ROC AUC, EER and its threshold, confusion matrix and per-class precision/recall/F1 at the
  threshold chosen on validation (never on test), and a threshold table over GRID (0.00..1.00 step 0.01,
  finer near 0 and 1);
- portfolio level: a query against k references of the claimed artist, scores aggregated exactly as the
  service does (mean of the top-m pair scores), one table per k;
- plots (ROC, score histograms, confusion matrix); REPORT.md is written from these by training/evaluation/report.py.

Calibration tables come from VAL, with the distinct pairs (trials) behind each (sampling repeats pairs of a small
split; the card records the counts, the service bounds its rates by them); the recommended threshold is the
table's equal-error point as contract.operating defines it. Metrics from TEST (unseen artists) and, apart, from
`test_seen`. Covered by tests/training/test_evaluate.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score, roc_curve

from contract.aggregation import aggregate_rows
from contract.calibration import SampleSize, sample_size, threshold_table
from contract.card import Aggregation, Calibration, PortfolioCalibration
from contract.heads import head_kind
from contract.operating import Table, operating_point
from training.data.pairs import fixed_pairs
from training.heads.trained import HeadModels

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402

PORTFOLIO_KS = (1, 3, 5, 10, 20)
TOP_M = Aggregation().top_m
# a portfolio table from fewer eligible artists than this would describe a handful of people, not a model
MIN_PORTFOLIO_ARTISTS = 3
CLASS_NAMES = ("different", "same")

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def pair_scorer(head: HeadModels, embeddings: np.ndarray, batch_size: int = 8192) -> PairScorer:
    """(ia, ib) → P(same) over one embedding matrix, via the exported-equivalent pair model.

    A symmetric head projects every image once and then only runs the comparator, as the service does.
    """
    emb = np.asarray(embeddings, np.float32)
    if head.projection is not None and head.comparator is not None:
        proj = np.asarray(head.projection.predict(emb, batch_size=batch_size, verbose=0), np.float32)

        def score(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
            x = {"projection_a": proj[ia], "projection_b": proj[ib]}
            return np.asarray(head.comparator.predict(x, batch_size=batch_size, verbose=0), np.float64)

        return score

    def score(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        x = {"embedding_a": emb[ia], "embedding_b": emb[ib]}
        return np.asarray(head.pair.predict(x, batch_size=batch_size, verbose=0), np.float64)

    return score


# ---------------------------------------------------------------------------------------------- metrics


def roc_summary(y: np.ndarray, s: np.ndarray) -> dict:
    """AUC, equal error rate and the threshold where FPR and FNR cross."""
    y = np.asarray(y)
    fpr, tpr, thr = roc_curve(y, s)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    return {
        "auc": float(roc_auc_score(y, s)),
        "eer": float((fpr[i] + fnr[i]) / 2),
        # roc_curve's first threshold is +inf (nothing accepted); scores are probabilities
        "eer_threshold": float(np.clip(thr[i], 0.0, 1.0)),
        "n": int(len(y)),
        "n_same": int(y.sum()),
    }


def at_threshold(y: np.ndarray, s: np.ndarray, threshold: float) -> dict:
    """Confusion matrix and classification report (the original's printout) at one threshold."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(s) >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    kw = {"labels": [0, 1], "target_names": list(CLASS_NAMES), "zero_division": 0, "digits": 3}
    return {
        "threshold": float(threshold),
        "confusion": cm.tolist(),
        "report": classification_report(y, pred, output_dict=True, **kw),
        "report_text": classification_report(y, pred, **kw),
    }


# -------------------------------------------------------------------------------------------- portfolio


def portfolio_trials(
    labels: np.ndarray, k: int, n_trials: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Balanced verify trials: (query [T], references [T, k], y [T]); None when too few artists qualify.

    Positive: a query image of artist A and k *other* images of A. Negative: k images of A and a query by
    another artist. A is drawn uniformly among artists with at least k+1 images.
    """
    labels = np.asarray(labels)
    artists, inverse = np.unique(labels, return_inverse=True)
    groups = [np.flatnonzero(inverse == a) for a in range(len(artists))]
    eligible = [a for a, g in enumerate(groups) if len(g) >= k + 1]
    if len(eligible) < MIN_PORTFOLIO_ARTISTS or len(artists) < 2:
        return None
    rng = np.random.default_rng(seed)
    n_pos = n_trials // 2
    queries, refs, ys = [], [], []
    for t in range(n_trials):
        a = eligible[rng.integers(len(eligible))]
        same = t < n_pos
        if same:
            chosen = rng.choice(groups[a], size=k + 1, replace=False)
            q, r = chosen[0], chosen[1:]
        else:
            r = rng.choice(groups[a], size=k, replace=False)
            other = rng.integers(len(artists) - 1)
            other += other >= a
            q = rng.choice(groups[other])
        queries.append(q)
        refs.append(r)
        ys.append(1.0 if same else 0.0)
    return np.asarray(queries), np.asarray(refs), np.asarray(ys)


def portfolio_scores(
    score: PairScorer, labels: np.ndarray, k: int, n_trials: int, top_m: int = TOP_M, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    trials = portfolio_trials(labels, k, n_trials, seed)
    if trials is None:
        return None
    q, r, y = trials
    pair = score(np.repeat(q, k), r.reshape(-1)).reshape(len(q), k)
    return y, aggregate_rows(pair, Aggregation(top_m=top_m))


def portfolio_counts(labels: np.ndarray, k: int, n_trials: int, seed: int = 0) -> SampleSize | None:
    """Distinct trials of `portfolio_trials(labels, k, n_trials, seed)` per class: a trial drawn twice shows no
    more than once (small splits repeat trials)."""
    trials = portfolio_trials(labels, k, n_trials, seed)
    if trials is None:
        return None
    q, r, y = trials
    return sample_size(y, ids=np.column_stack([q, np.sort(r, axis=1)]))


# ------------------------------------------------------------------------------------------ split level


@dataclass
class SplitScores:
    """Raw scores of one head on one split: pairs and, per k, portfolio trials."""

    split: str
    y: np.ndarray
    s: np.ndarray
    portfolio: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    n_images: int = 0
    n_artists: int = 0
    # distinct pairs / trials behind the scores (sampling repeats them); None: count the scores themselves
    counts: SampleSize | None = None
    portfolio_counts: dict[int, SampleSize] = field(default_factory=dict)


def score_split(
    head: HeadModels,
    embeddings: np.ndarray,
    labels: np.ndarray,
    split: str,
    n_pairs: int = 4000,
    n_trials: int = 1000,
    ks: Sequence[int] = PORTFOLIO_KS,
    top_m: int = TOP_M,
    seed: int = 0,
) -> SplitScores:
    score = pair_scorer(head, embeddings)
    ia, ib, y = fixed_pairs(labels, n_pairs, seed=seed)
    out = SplitScores(split, y, score(ia, ib), n_images=len(labels), n_artists=len(np.unique(labels)))
    out.counts = sample_size(y, ids=np.sort(np.column_stack([ia, ib]), axis=1))
    for k in ks:
        res = portfolio_scores(score, labels, k, n_trials, top_m, seed=seed + k)
        counts = portfolio_counts(labels, k, n_trials, seed=seed + k)
        if res is not None and counts is not None:
            out.portfolio[k] = res
            out.portfolio_counts[k] = counts
    return out


def calibrate(val: SplitScores, top_m: int = TOP_M) -> Calibration:
    """The card's calibration: tables on validation artists with the pairs (trials) behind them, threshold at
    the equal-error point of the pair table, chosen as the service chooses its default (contract.operating)."""
    pairs = val.counts or sample_size(val.y)
    pair = threshold_table(val.y, val.s, counts=pairs)
    eer = operating_point(Table(pair, pairs.genuine, pairs.impostor))
    portfolio = []
    for k, (y, s) in sorted(val.portfolio.items()):
        trials = val.portfolio_counts.get(k) or sample_size(y)
        portfolio.append(
            PortfolioCalibration(
                k=k,
                table=threshold_table(y, s, counts=trials),
                genuine_trials=trials.genuine,
                impostor_trials=trials.impostor,
            )
        )
    return Calibration(
        split=val.split,
        pair=pair,
        genuine_pairs=pairs.genuine,
        impostor_pairs=pairs.impostor,
        aggregation=Aggregation(top_m=top_m),
        portfolio=portfolio,
        recommended_threshold=eer.threshold,
        recommended_rule=f"equal error rate on {val.split} pairs (FPR {eer.fpr:.3f}, FNR {eer.fnr:.3f})",
    )


def split_metrics(scores: SplitScores, threshold: float) -> dict:
    """Metrics of one split for the card and the report (JSON-ready)."""
    return {
        "split": scores.split,
        "images": scores.n_images,
        "artists": scores.n_artists,
        "pair": {**roc_summary(scores.y, scores.s), "at_threshold": at_threshold(scores.y, scores.s, threshold)},
        "portfolio": {
            str(k): {**roc_summary(y, s), "at_threshold": at_threshold(y, s, threshold)}
            for k, (y, s) in sorted(scores.portfolio.items())
        },
    }


@dataclass
class HeadEvaluation:
    kind: str
    calibration: Calibration
    metrics: dict  # {"val": …, "unseen": …, "seen": …}
    plots: list[str] = field(default_factory=list)
    params: int = 0
    train_summary: dict = field(default_factory=dict)

    @property
    def val_auc(self) -> float:
        return float(self.metrics["val"]["pair"]["auc"])

    def card_metrics(self) -> dict:
        """Card metrics without the printable report text."""

        def strip(d):
            if isinstance(d, dict):
                return {k: strip(v) for k, v in d.items() if k != "report_text"}
            return d

        return strip(self.metrics)


def evaluate_head(
    head: HeadModels,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    plot_dir: Path | None = None,
    n_pairs: int = 4000,
    n_trials: int = 1000,
    top_m: int = TOP_M,
    seed: int = 0,
) -> HeadEvaluation:
    """`splits` maps "val", "test" and optionally "test_seen" to (embeddings, labels).

    Reported names: val → "val", test → "unseen", test_seen → "seen".
    """
    if "val" not in splits or "test" not in splits:
        raise ValueError("evaluation needs a 'val' and a 'test' split")
    scored = {
        name: score_split(head, e, lab, name, n_pairs=n_pairs, n_trials=n_trials, top_m=top_m, seed=seed + 7 * i)
        for i, (name, (e, lab)) in enumerate(splits.items())
        if len(np.unique(lab)) >= 2
    }
    calibration = calibrate(scored["val"], top_m)
    thr = calibration.recommended_threshold
    names = {"val": "val", "test": "unseen", "test_seen": "seen"}
    metrics = {names[s]: split_metrics(sc, thr) for s, sc in scored.items() if s in names}
    plots: list[str] = []
    if plot_dir is not None:
        for split in ("test", "test_seen"):
            if split in scored:
                plots += plot_split(scored[split], thr, Path(plot_dir), f"{head.kind}_{names[split]}")
    return HeadEvaluation(head.kind, calibration, metrics, plots, params=head.params)


# ---------------------------------------------------------------------------------------------- plots


def plot_split(sc: SplitScores, threshold: float, out_dir: Path, prefix: str) -> list[str]:
    """ROC (pair + portfolio), score histograms and the confusion matrix; returns the file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(sc.y, sc.s)
    ax.plot(fpr, tpr, lw=2, label=f"pair (AUC {roc_auc_score(sc.y, sc.s):.3f})")
    for k, (y, s) in sorted(sc.portfolio.items()):
        f, t, _ = roc_curve(y, s)
        ax.plot(f, t, lw=1, label=f"portfolio k={k} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {prefix}")
    ax.legend(loc="lower right", fontsize=8)
    files.append(_save(fig, out_dir / f"{prefix}_roc.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    y = sc.y.astype(bool)
    ax.hist(sc.s[~y], bins=bins, alpha=0.6, label="different artists", color="tab:red")
    ax.hist(sc.s[y], bins=bins, alpha=0.6, label="same artist", color="tab:blue")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set(xlabel="P(same artist)", ylabel="pairs", title=f"Pair scores — {prefix}")
    ax.legend(fontsize=8)
    files.append(_save(fig, out_dir / f"{prefix}_hist.png"))

    fig, ax = plt.subplots(figsize=(4, 4))
    cm = confusion_matrix(sc.y.astype(int), (sc.s >= threshold).astype(int), labels=[0, 1])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion @ {threshold:.2f}")
    files.append(_save(fig, out_dir / f"{prefix}_confusion.png"))
    return files


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


# ------------------------------------------------------------------------------------------ selection


def choose_head(evaluations: Sequence[HeadEvaluation]) -> tuple[HeadEvaluation, str]:
    """The head to ship: best validation pair AUC (test is never used to choose)."""
    best = max(evaluations, key=lambda e: e.val_auc)
    others = [e for e in evaluations if e is not best]
    why = f"`{best.kind}` has the highest validation pair AUC ({best.val_auc:.3f}"
    if others:
        why += "; " + ", ".join(f"`{e.kind}` {e.val_auc:.3f}" for e in others)
    why += "). Chosen on validation artists only; test artists stay unseen until the numbers below."
    if others and best.params < min(e.params for e in others):
        why += f" It is also the smaller head ({best.params:,} parameters)."
    if head_kind(best.kind).projection:
        why += (
            " Its per-image projection is computed once per reference work, so verifying a query against a"
            " portfolio runs only the small comparator per pair."
        )
    return best, why
