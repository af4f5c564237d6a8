"""When are two pictures the same painting? The similarity threshold of `calibration.same_work`, measured.

The service refuses to enrol a picture of a painting already enrolled (under any artist) and says when a query is
a copy of an enrolled work (service/storage/gallery.py `same_work`). "The same painting" is the cosine of the two
pictures' reference vectors — for the shipped cosine head, its nuisance-aware projection, which is fitted to count
copies of one painting under acquisition conditions as one point — at or above a threshold. That projection was
fitted on the corpus's own copies, so measuring it there would flatter it: here every figure comes from paintings
the projection never saw. In each repeat the artists are split in halves; a projection is fitted (the card's
recipe: training/evaluation/robustness.py `Recipe`) on one half's paintings and their copies under every
condition, and the other half is judged:

- copies: each painting as published against itself under each acquisition condition
  (training/data/conditions.py);
- different paintings: every pair of different paintings, both as published, one as published and one through
  a condition, and both through the same condition — same-artist pairs included (the hardest).

The threshold is the highest different-painting cosine seen, rounded up to 0.01: no different pair reached it,
which on n distinct pairs shows a false "same painting" rate of at most `rate_upper(0, n)` (95 %). The share of
copies found at that threshold is reported per condition. `python -m training duplicates --model DIR --corpus DIR`
prints the figures; `--write` records them in the card (not part of the model id: nothing an embedding depends on
changes). Covered by tests/training/test_duplicates.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract.card import Card, SameWork, load_card, seal_card
from contract.operating import rate_upper
from training.data.datasets import read_folders
from training.evaluation import realeval
from training.evaluation.robustness import Copies, Recipe, model_copies


def judge(copies: Copies, labels: np.ndarray, recipe: Recipe, repeats: int = 5, seed: int = 0) -> dict:
    """The cosines of copies and of different paintings, each judged by a projection fitted on the other artists
    (see the module docstring): {"copies": {condition: [cosines]}, "different": [highest per repeat and kind],
    "max_different", "pairs" (distinct different-painting pairs)}."""
    names = sorted(copies.under)
    artists = np.unique(labels)
    rng = np.random.default_rng(seed)
    found: dict[str, list[np.ndarray]] = {n: [] for n in names}
    highest = -1.0
    seen_pairs: set[tuple[int, int]] = set()
    for _ in range(repeats):
        half = rng.permutation(artists)[: len(artists) // 2]
        fit = np.where(np.isin(labels, half))[0]
        test = np.where(~np.isin(labels, half))[0]
        w = recipe.fit(copies, fit, names)
        pub = realeval.project(w, copies.emb[test])
        a, b = np.triu_indices(len(test), 1)
        seen_pairs |= {(int(test[i]), int(test[j])) for i, j in zip(a, b, strict=True)}
        highest = max(highest, float(np.max(np.sum(pub[a] * pub[b], axis=1))))
        off = ~np.eye(len(test), dtype=bool)
        for n in names:
            under = realeval.project(w, copies.under[n][test])
            cross = pub @ under.T
            found[n].append(np.diag(cross))
            highest = max(highest, float(cross[off].max()), float(np.max(np.sum(under[a] * under[b], axis=1))))
    return {
        "copies": {n: np.concatenate(v) for n, v in found.items()},
        "max_different": highest,
        "pairs": len(seen_pairs),
    }


def same_work(judged: dict, corpus: str, repeats: int) -> SameWork:
    """The threshold no different pair reached (rounded up to 0.01) and what it finds of the copies."""
    t = math.ceil(judged["max_different"] * 100 + 1e-9) / 100
    per = {n: float(np.mean(v >= t)) for n, v in judged["copies"].items()}
    every = np.concatenate(list(judged["copies"].values()))
    return SameWork(
        threshold=t,
        measured_on=(
            f"{corpus}: artist halves x {repeats}, projection fitted on the other half; copies under "
            f"{len(per)} acquisition conditions against every pair of different paintings (as published, one or "
            "both through a condition)"
        ),
        different_pairs=int(judged["pairs"]),
        false_same=0,
        copies=int(len(every)),
        found=float(np.mean(every >= t)),
        per_condition=per,
    )


def measure(
    model_dir: Path,
    corpus: Path,
    work: Path,
    repeats: int = 5,
    seed: int = 0,
    conditions: Sequence[str] | None = None,
    write: bool = False,
) -> tuple[Card, SameWork]:
    """Measure `model_dir`'s same-painting threshold on `corpus` (folder per artist; crops cached in `work`);
    with `write`, record it in the model's card."""
    card = load_card(model_dir)
    if card.head.cosine is None:
        raise ValueError("the same-painting measurement refits the projection: it needs a cosine head")
    manifest = read_folders(corpus)
    labels, _ = manifest.labels()
    paths = manifest.paths()
    copies, _, _ = model_copies(model_dir, paths, work, conditions)
    recipe = Recipe(dim=card.head.cosine.dim, power=card.head.cosine.power)
    judged = judge(copies, np.asarray(labels), recipe, repeats=repeats, seed=seed)
    result = same_work(judged, str(corpus), repeats)
    if write:
        cal = card.calibration.model_copy(update={"same_work": result})
        updated = card.model_copy(update={"calibration": cal})
        assert updated.model_id == card.model_id  # nothing an embedding depends on changed
        seal_card(updated, Path(model_dir))
    return card, result


def report(result: SameWork) -> str:
    bound = rate_upper(0.0, result.different_pairs)
    lines = [
        f"same-painting threshold {result.threshold:.2f}: 0 of {result.different_pairs} distinct different-painting "
        f"pairs reach it (95 % upper bound {bound:.5f}); {result.found:.1%} of {result.copies} copies found",
        *(f"  {n:<16} {v:6.1%}" for n, v in sorted(result.per_condition.items(), key=lambda kv: kv[1])),
    ]
    return "\n".join(lines)
