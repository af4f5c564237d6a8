"""REPORT.md: what a model was trained on, how each head did on unseen (and, apart, seen) artists, the shipped
head's calibration tables, plots, and how long it took to build. Written by `export` from the card it has just
written and the evaluations (training/evaluate.py). Covered by tests/training/test_evaluate.py (write_report)
and tests/training/test_e2e.py (write_model_report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from contract.card import CalibrationRow, Card
from training.evaluate import HeadEvaluation


def write_model_report(
    path: Path,
    card: Card,
    evaluations: Sequence[HeadEvaluation],
    chosen: HeadEvaluation,
    why: str,
    command: str,
    timings: dict[str, float],
) -> Path:
    """REPORT.md for an exported model: corpus, splits and backbone as its card records them."""
    data = card.training_data
    corpus: dict = {"name": card.name, "corpus": data.get("corpus"), "source": data.get("source")}
    generator = data.get("generator")
    if isinstance(generator, dict):
        corpus["synthetic generator"] = ", ".join(
            f"{k}={generator[k]}" for k in ("seed", "n_artists", "per_artist", "size") if k in generator
        )
    corpus["unreadable images skipped"] = data.get("unreadable_skipped", 0)
    corpus["split"] = data.get("split")
    b = card.backbone
    backbone = {
        "arch": b.arch,
        "input": f"{b.preprocessing.crop[0]}x{b.preprocessing.crop[1]}",
        "embedding_dim": b.embedding_dim,
        "recipe": b.embedding.description,
        "weights": b.weights,
        "ONNX parity (max abs diff)": ", ".join(f"{k} {v:.2g}" for k, v in card.metrics["parity_max_abs_diff"].items()),
    }
    splits = dict(data.get("splits", {}))
    return write_report(path, evaluations, chosen, why, corpus, splits, command, timings, backbone)


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _table(rows: list[CalibrationRow], step: int = 5) -> list[str]:
    out = ["| threshold | FPR | FNR | precision | recall |", "|---:|---:|---:|---:|---:|"]
    for r in rows[::step]:
        out.append(f"| {r.threshold:.2f} | {r.fpr:.3f} | {r.fnr:.3f} | {r.precision:.3f} | {r.recall:.3f} |")
    return out


def write_report(
    path: Path,
    evaluations: Sequence[HeadEvaluation],
    chosen: HeadEvaluation,
    why: str,
    corpus: dict,
    splits: dict,
    command: str,
    timings: dict[str, float],
    backbone: dict | None = None,
) -> Path:
    """REPORT.md: corpus, splits, both heads side by side (unseen), seen apart, tables, plots, how to redo."""
    L: list[str] = [f"# Model report — {corpus.get('name', 'model')}", ""]
    total = sum(timings.values())
    L += [f"Reproduce with `{command}` ({total / 60:.1f} min end to end on the machine that built it).", ""]
    L += ["## Corpus and splits", ""]
    for k, v in corpus.items():
        L.append(f"- {k}: {v}")
    L += ["", "| split | images | artists |", "|---|---:|---:|"]
    for name, s in splits.items():
        L.append(f"| {name} | {s['images']} | {s['artists']} |")
    L += [
        "",
        "`val` and `test` artists are disjoint from `train` and from each other: the numbers under *unseen* "
        "are what the service does with artists it never saw. `test_seen` (if present) holds other images of "
        "training artists — the original work's leaky protocol — and is reported apart, never mixed in.",
        "",
    ]
    if backbone:
        L += ["## Backbone", ""] + [f"- {k}: {v}" for k, v in backbone.items()] + [""]

    L += ["## Heads on unseen artists (test)", ""]
    head_cols = " | ".join(f"`{e.kind}`" for e in evaluations)
    L += [f"| metric | {head_cols} |", "|---|" + "---:|" * len(evaluations)]

    def row(label: str, get) -> None:
        vals = []
        for e in evaluations:
            try:
                vals.append(get(e))
            except KeyError:
                vals.append("–")
        L.append(f"| {label} | " + " | ".join(vals) + " |")

    row("parameters", lambda e: f"{e.params:,}")
    row("val pair AUC (selection)", lambda e: _f(e.val_auc))
    row("pair AUC", lambda e: _f(e.metrics["unseen"]["pair"]["auc"]))
    row("pair EER", lambda e: _f(e.metrics["unseen"]["pair"]["eer"]))
    row("threshold (val EER)", lambda e: _f(e.calibration.recommended_threshold, 2))
    row("accuracy @ threshold", lambda e: _f(e.metrics["unseen"]["pair"]["at_threshold"]["report"]["accuracy"]))
    ks = sorted({int(k) for e in evaluations for k in e.metrics["unseen"]["portfolio"]})
    for k in ks:
        row(f"portfolio k={k} AUC", lambda e, k=k: _f(e.metrics["unseen"]["portfolio"][str(k)]["auc"]))
        row(f"portfolio k={k} EER", lambda e, k=k: _f(e.metrics["unseen"]["portfolio"][str(k)]["eer"]))
    if any(e.train_summary for e in evaluations):
        row("epochs (best)", lambda e: f"{e.train_summary['epochs_run']} ({e.train_summary['best_epoch']})")
        row("training time (s)", lambda e: f"{e.train_summary['seconds']:.0f}")
    L += ["", f"**Shipped head: `{chosen.kind}`.** {why}", ""]

    for e in evaluations:
        L += [f"## `{e.kind}` head", ""]
        for label in ("unseen", "seen"):
            if label not in e.metrics:
                continue
            m = e.metrics[label]
            at = m["pair"]["at_threshold"]
            L += [
                f"### {label} artists ({m['split']}: {m['images']} images, {m['artists']} artists)",
                "",
                f"Pair AUC {_f(m['pair']['auc'])}, EER {_f(m['pair']['eer'])} "
                f"(at score {_f(m['pair']['eer_threshold'], 2)}), {m['pair']['n']} balanced pairs.",
                "",
                f"At the validation threshold {at['threshold']:.2f}: confusion matrix "
                f"[[TN, FP], [FN, TP]] = {at['confusion']}",
                "",
                "```",
                at["report_text"].rstrip(),
                "```",
                "",
            ]
            if m["portfolio"]:
                L += ["| portfolio k | AUC | EER | trials |", "|---:|---:|---:|---:|"]
                for k, p in m["portfolio"].items():
                    L.append(f"| {k} | {_f(p['auc'])} | {_f(p['eer'])} | {p['n']} |")
                L.append("")
        if e.plots:
            L += ["Plots: " + ", ".join(f"[{p}]({p})" for p in e.plots), ""]
            L += [f"![{p}]({p})" for p in e.plots if p.endswith("_roc.png")] + [""]

    c = chosen.calibration
    L += [
        f"## Calibration of the shipped head (`{chosen.kind}`, {c.split} artists)",
        "",
        f"Recommended threshold {c.recommended_threshold:.2f}: {c.recommended_rule}. Aggregation over a "
        f"portfolio: mean of the top {c.aggregation.top_m} pair scores. Every 0.05 shown; model.json holds all "
        "101 rows.",
        "",
        "### Pair",
        "",
        *_table(c.pair),
        "",
    ]
    for p in c.portfolio:
        L += [f"### Portfolio, k = {p.k} references", "", *_table(p.table), ""]
    L += ["## Time taken", "", "| stage | seconds |", "|---|---:|"]
    L += [f"| {k} | {v:.1f} |" for k, v in timings.items()] + [f"| total | {total:.1f} |", ""]
    path = Path(path)
    path.write_text("\n".join(L))
    return path
