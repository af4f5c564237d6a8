"""training/evaluation/paired.py: two models' AUC paired on the same artist splits — a model against itself differs
by exactly nothing, a model whose pictures carry less of the artist is found lower split after split, and the
`paired` command runs on two model directories end to end."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import paired
from training.evaluation.robustness import Copies

ARTISTS, WORKS, CROPS, DIM = 12, 4, 3, 24
CONDITIONS = ("jpeg_q50", "blur_1.5")


def copies(signal: float, seed: int = 0) -> Copies:
    """Paintings whose crops hold an artist direction (weight `signal`) plus noise; copies under two conditions."""
    rng = np.random.default_rng(seed)
    artist = rng.normal(size=(ARTISTS, DIM))
    crops, under = [], {k: [] for k in CONDITIONS}
    for a in range(ARTISTS):
        for _ in range(WORKS):
            painting = signal * artist[a] + rng.normal(size=DIM)
            c = painting + 0.3 * rng.normal(size=(CROPS, DIM))
            crops.append(c)
            for k in CONDITIONS:
                under[k].append(c + 0.5 * rng.normal(size=(CROPS, DIM)))
    return Copies.of(crops, under)


LABELS = np.repeat(np.arange(ARTISTS), WORKS)
RECIPE = paired.Recipe(dim=8, subspace=16)


def test_a_model_against_itself_differs_by_nothing():
    c = copies(1.0)
    result = paired.compare(c, c, LABELS, CONDITIONS, seeds=range(4), condition_seeds=range(3), recipe=RECIPE)
    assert set(result) == {"published", "jpeg_q50/within", "jpeg_q50/cross", "blur_1.5/within", "blur_1.5/cross"}
    for d in result.values():
        assert np.all(d.d == 0) and d.summary()["b_lower"] == 0
        assert 0.5 < d.summary()["a"] <= 1.0


def test_a_model_that_sees_less_of_the_artist_is_found_lower_split_after_split():
    strong, weak = copies(1.5), copies(0.3)
    result = paired.compare(
        strong,
        weak,
        LABELS,
        CONDITIONS,
        seeds=range(6),
        condition_seeds=range(4),
        conditions=["jpeg_q50"],
        recipe=RECIPE,
    )
    s = result["published"].summary()
    assert s["diff"] < 0 and s["ci95"][1] < 0 and s["b_lower"] == 6
    assert set(result) == {"published", "jpeg_q50/within", "jpeg_q50/cross"}
    assert result["jpeg_q50/within"].mean < 0
    text = paired.table(result, "strong", "weak")
    assert text.count("\n") == 2 + len(result) - 1 and "weak − strong" in text


def test_the_paired_command_compares_two_model_directories(tmp_path):
    from bench.devmodel import build_dev_model
    from bench.modelcopy import recipe_copy
    from training.cli import main
    from training.data import synthetic

    corpus = tmp_path / "corpus"
    synthetic.generate(corpus, 5, 2, seed=0, size=48)
    a = build_dev_model(tmp_path / "a")
    b = recipe_copy(a, tmp_path / "b", resize_shorter=40)
    out = tmp_path / "out" / "cmp"
    argv = ["paired", "--corpus", str(corpus), "--model", str(a), str(b), "--work", str(tmp_path / "work"),
            "--seeds", "2", "--condition-seeds", "2", "--conditions", "jpeg_q50", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    figures = __import__("json").loads(out.with_suffix(".json").read_text())
    assert set(figures) == {"published", "jpeg_q50/within", "jpeg_q50/cross"}
    assert figures["published"]["seeds"] == 2 and "paired --corpus" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("n", [1])
def test_one_split_has_no_standard_error(n):
    d = paired.Diff([0.7] * n, [0.6] * n)
    assert d.mean == pytest.approx(-0.1) and np.isnan(d.se)
