"""Two models side by side on the same real pictures and the same artist splits: `python -m training paired`.

A REPORT's AUC rests on its own splits, and two models' intervals overlap widely on a small set; what tells them
apart is the *paired* difference: both recipes fitted and judged on the very same artist halves, split after split.
For each model (its card's recipe and backbone, as shipped: contract.decode/recipe through
robustness.condition_crops, cached in `work`):

- **published**: artists split in halves by seed s; each half's pairs scored by the nuisance-aware projection
  (robustness.Recipe, the shipped head's) fitted on the other half's paintings and their copies under every
  acquisition condition; the pair ROC AUC over both halves. The difference b − a per seed, its mean, standard
  error and a normal 95 % interval (seeds are the unit: the same pairs recur across seeds).
- **per condition**: the same, the projection fitted without the condition's family (as the robustness judge
  fits), pairs with both pictures through the condition (`within`) and one through it, one as published
  (`cross`).

Ranking only (cosines of the projection; no calibration, quality bands or refusals): the REPORTs hold the rates.
Covered by tests/training/test_paired.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import conditions as cond
from training.evaluation import realeval
from training.evaluation.robustness import Copies, Recipe, allowed_without, model_copies

KINDS = ("within", "cross")


@dataclass(frozen=True)
class Diff:
    """Per-seed AUCs of a and b, and what their paired difference b − a says."""

    a: list[float]
    b: list[float]

    @property
    def d(self) -> np.ndarray:
        return np.asarray(self.b) - np.asarray(self.a)

    @property
    def mean(self) -> float:
        return float(self.d.mean())

    @property
    def se(self) -> float:
        return float(self.d.std(ddof=1) / np.sqrt(len(self.d))) if len(self.d) > 1 else float("nan")

    def summary(self) -> dict:
        return {
            "a": float(np.mean(self.a)),
            "b": float(np.mean(self.b)),
            "diff": self.mean,
            "se": self.se,
            "ci95": [self.mean - 1.96 * self.se, self.mean + 1.96 * self.se],
            "b_lower": int((self.d < 0).sum()),
            "seeds": len(self.d),
        }


def _halves_auc(copies: Copies, labels: np.ndarray, seed: int, fit_on: Sequence[str], recipe: Recipe,
                condition: str | None) -> dict[str, float]:  # fmt: skip
    """Pair AUC over both artist halves of `seed`: published pairs, or (with `condition`) within and cross."""
    half = realeval.artist_folds(labels, 2, seed)
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for f in (0, 1):
        fit, test = np.where(half == f)[0], np.where(half != f)[0]
        w = recipe.fit(copies, fit, list(fit_on))
        pub = realeval.project(w, copies.emb[test])
        a, b = np.triu_indices(len(test), 1)
        same = labels[test][a] == labels[test][b]
        if condition is None:
            pairs = {"published": (pub, pub)}
        else:
            under = realeval.project(w, copies.under[condition][test])
            pairs = {"within": (under, under), "cross": (under, pub)}
        for kind, (x, y) in pairs.items():
            scores, truth = parts.setdefault(kind, ([], []))
            scores.append(np.sum(x[a] * y[b], axis=1))
            truth.append(same)
    return {k: realeval.auc_eer(np.concatenate(t), np.concatenate(s))[0] for k, (s, t) in parts.items()}


def compare(
    a: Copies,
    b: Copies,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    seeds: Sequence[int] = range(30),
    condition_seeds: Sequence[int] = range(100, 112),
    conditions: Sequence[str] | None = None,
    recipe: Recipe = Recipe(),
) -> dict[str, Diff]:
    """The paired AUCs of a and b: "published", and "<condition>/<kind>". `names`: the acquisition conditions the
    copies hold (the projection is fitted on all of them for "published", and without the judged condition's
    family for the others); `conditions`: those judged one by one (default: all)."""
    names = list(names)
    out: dict[str, Diff] = {"published": Diff([], [])}
    for s in seeds:
        out["published"].a.append(_halves_auc(a, labels, s, names, recipe, None)["published"])
        out["published"].b.append(_halves_auc(b, labels, s, names, recipe, None)["published"])
    for c in conditions if conditions is not None else names:
        fit_on = allowed_without(names, frozenset(cond.get([c])[0].families))
        for s in condition_seeds:
            ra = _halves_auc(a, labels, s, fit_on, recipe, c)
            rb = _halves_auc(b, labels, s, fit_on, recipe, c)
            for kind in KINDS:
                d = out.setdefault(f"{c}/{kind}", Diff([], []))
                d.a.append(ra[kind])
                d.b.append(rb[kind])
    return out


def table(result: dict[str, Diff], name_a: str, name_b: str) -> str:
    """The comparison as a markdown table."""
    rows = [
        f"| pairs | {name_a} | {name_b} | {name_b} − {name_a} [95 % CI] | se | seeds where {name_b} is lower |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for key, d in result.items():
        s = d.summary()
        rows.append(
            f"| {key} | {s['a']:.3f} | {s['b']:.3f} | {s['diff']:+.3f} [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}] "
            f"| {s['se']:.3f} | {s['b_lower']} / {s['seeds']} |"
        )
    return "\n".join(rows)


def run(
    model_a: Path,
    model_b: Path,
    corpus: Path,
    work: Path,
    *,
    seeds: int = 30,
    condition_seeds: int = 12,
    conditions: Sequence[str] | None = None,
) -> tuple[dict[str, Diff], tuple[str, str]]:
    """`compare` two model directories on a folder-per-artist corpus; returns the result and the models' ids. The
    projection is fitted as model a's card says (dimensions, power); both models are fitted alike."""
    from contract.card import load_card
    from training.data.datasets import read_folders

    manifest = read_folders(Path(corpus))
    labels, _ = manifest.labels()
    paths = manifest.paths()
    a, _, chosen = model_copies(model_a, paths, work)
    b, _, _ = model_copies(model_b, paths, work)
    cards = load_card(model_a), load_card(model_b)
    head = cards[0].head.cosine
    recipe = Recipe() if head is None else Recipe(dim=head.dim, power=head.power)
    names = [c.name for c in chosen]
    result = compare(
        a, b, np.asarray(labels), names, seeds=range(seeds), condition_seeds=range(100, 100 + condition_seeds),
        conditions=conditions, recipe=recipe,
    )  # fmt: skip
    return result, (cards[0].model_id, cards[1].model_id)
