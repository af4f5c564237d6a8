"""REPORT.md: what a model was trained on, how each head did on unseen (and, apart, seen) artists, the shipped
head's calibration tables, plots, and how long it took to build. Written by `export` from the card it has just
written and the evaluations (training/evaluation/evaluate.py). Covered by tests/training/test_evaluate.py (write_report)
and tests/training/test_e2e.py (write_model_report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contract.card import CalibrationRow, Card, QualityModel

if TYPE_CHECKING:  # evaluate imports the Keras heads; a report of a cosine model needs no TensorFlow
    from training.evaluation.evaluate import HeadEvaluation


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
    """Every `step`-th row; the rates' 95 % upper bounds in brackets where the table carries them."""

    def rate(value: float, upper: float | None) -> str:
        return f"{value:.3f}" + (f" ({upper:.3f})" if upper is not None else "")

    out = ["| threshold | FPR (95 % upper) | FNR (95 % upper) | precision | recall |", "|---:|---:|---:|---:|---:|"]
    for r in rows[::step]:
        out.append(
            f"| {r.threshold:.2f} | {rate(r.fpr, r.fpr_upper)} | {rate(r.fnr, r.fnr_upper)} | {r.precision:.3f} "
            f"| {r.recall:.3f} |"
        )
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


def _ci(v: Sequence[float]) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def _head_line(card: Card) -> str:
    h = card.head
    if h.cosine is None:
        return f"- head `{h.kind}`."
    c = h.cosine
    return (
        f"- head `{h.kind}`: whitening to {c.dim} dims (eigenvalue power {c.power:g}) fitted on {c.fitted_on}; "
        f"P(same) = sigmoid({c.slope:.3f} x cosine {c.bias:+.3f}), fitted on out-of-fold pairs."
    )


def write_real_report(path: Path, card: Card, command: str, seconds: float) -> Path:
    """REPORT.md for a model built on real paintings (training/realmodel.py): everything from its card."""
    real = card.metrics["real"]
    pair, verify = real["pair"], real["verify_loo"]
    h, b = card.head, card.backbone
    lines = [
        f"# {card.model_id}",
        "",
        f"Built by `{command or 'python -m training make-real'}` in {seconds / 60:.1f} min (CPU).",
        "",
        "## Corpus",
        "",
        f"- `{card.training_data.get('corpus')}`: {real['images']} paintings by {real['artists']} artists, "
        f"{real['artists_with_2_or_more']} of them with 2 or more works.",
    ]
    src = card.training_data.get("source")
    if isinstance(src, dict):
        lines.append(f"- source: {src.get('source')}; kept {src.get('kept')} of {src.get('objects')} objects "
                     f"(dropped: {', '.join(f'{k} {v}' for k, v in src.get('dropped', {}).items())}).")  # fmt: skip
    lines += [
        "",
        "## Model",
        "",
        f"- backbone `{b.arch}` ({b.weights}); {b.embedding.description}.",
        _head_line(card),
        f"- selected on {h.selected_on}.",
        "",
        "## How sure is it? (real paintings, artists never fitted on)",
        "",
        f"Protocol: {real['protocol']}. About {pair['same_artist_pairs_per_repeat']} same-artist pairs among "
        f"{pair['pairs_per_repeat']} per repeat: a small set, so the intervals are wide and the rates at strict "
        "operating points rest on few same-artist pairs.",
        "",
        "| measure | value | 95 % CI |",
        "|---|---:|---|",
        f"| pair ROC AUC | {pair['auc']:.3f} | {_ci(pair['auc_ci95'])} |",
        f"| pair EER | {pair['eer']:.3f} | {_ci(pair['eer_ci95'])} |",
        f"| verify (leave-one-out, portfolios of 1-3 works) AUC | {verify['auc']:.3f} | {_ci(verify['auc_ci95'])} |",
        "",
        f"Verify trials: {verify['genuine_trials']} genuine, {verify['impostor_trials']} impostor, "
        f"{verify['query_artists']} query artists.",
        "",
        "### Candidates (same out-of-fold pairs)",
        "",
        "| candidate | pair AUC |",
        "|---|---:|",
        *[f"| {k} | {v:.3f} |" for k, v in real["candidates_pair_auc"].items()],
        "",
    ]
    lines += robustness_lines(card)
    lines += quantisation_lines(card)
    syn = card.metrics.get("synthetic")
    if syn:
        lines += ["", "## Synthetic paintings (apart)", "", f"{syn['corpus']}: pair AUC {syn['pair_auc']:.3f}, "
                  f"EER {syn['pair_eer']:.3f}. Synthetic figures say nothing about real artists."]  # fmt: skip
    cal = card.calibration
    lines += [
        "",
        "## Calibration the service uses (from the out-of-fold real pairs)",
        "",
        f"Default threshold {cal.recommended_threshold:.4f}: {cal.recommended_rule}.",
        "",
        *(
            [
                f"The pair table rests on {cal.genuine_pairs} same-artist / {cal.impostor_pairs} different-artist "
                "pairs per repeat (the effective counts the card records): the service bounds every rate it claims "
                "by them (95 % Clopper–Pearson) and picks `max_fpr` thresholds on that bound.",
                "",
            ]
            if cal.genuine_pairs is not None
            else []
        ),
        *_table(cal.pair, step=10),
        "",
        "Verify's portfolio table (k=1) comes from leave-one-out trials with portfolios of 1-3 works; a gallery",
        "with enough artists of its own calibrates itself instead (the reply's `calibration.source` says which).",
        "",
        *[f"![{p}]({p})" for p in card.metrics.get("plots", [])],
        "",
    ]
    path.write_text("\n".join(lines))
    return path


TARGET_FPR, TARGET_AUC_DROP, TARGET_DEFAULT = 0.08, 0.03, 0.05


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _worst_fpr05(rows: dict) -> tuple[float, str]:
    """The highest FPR at max_fpr=0.05 over held-out conditions' pairs (within and cross) and where."""
    pairs = {k: v for k, v in rows.items() if k.endswith("/within") or k.endswith("/cross")}
    if not pairs:
        return math.nan, "–"
    key = max(pairs, key=lambda k: pairs[k])
    return pairs[key], key


def quantisation_lines(card: Card) -> list[str]:
    """The REPORT section of a model with an int8 backbone: how it was quantised and calibrated, how close its
    features stay to fp32's, and its measured figures beside the fp32 model's (read from that model's card)."""
    q = card.metrics.get("quantisation")
    if not q:
        return []
    h = q["held_out"]
    lines = [
        "",
        "## The int8 backbone against fp32",
        "",
        f"- quantised by {q['method']} (onnxruntime {q['onnxruntime']}); kept fp32: "
        + (", ".join(f"`{n}`" for n in q.get("fp32_nodes", [])) or "none")
        + ".",
        f"- activation ranges from {q['calibration_crops']} crops of {q.get('calibration_paintings', '?')} paintings "
        f"of {q.get('calibration_source', '?')}; {q.get('calibration_note', '')}.",
        f"- parity on {h['crops']} held-out crops of {h.get('paintings', '?')} other paintings (each crop's features "
        "as the service combines them, int8 against fp32): cosine mean "
        f"{h['cosine_mean']:.4f}, worst {h['cosine_min']:.4f}, 5th percentile {h['cosine_p05']:.4f} (refused below "
        f"mean {q['thresholds']['cosine_mean']} or worst {q['thresholds']['cosine_min']}).",
        f"- size: {_size(q['int8_bytes'])} against {_size(q['fp32_bytes'])}; {q['quantize_linear']} QuantizeLinear and "
        f"{q['dequantize_linear']} DequantizeLinear nodes.",
    ]
    t = q.get("timing")
    if t:
        lines.append(
            f"- speed at build time ({t['crops']} crops, one 4x4-grid picture; {t['threads']} intra-op threads, median "
            f"of {t['repeats']} runs on {t['machine']}, sharing the machine with the build): int8 "
            f"{t['int8_s'] * 1000:.1f} ms, fp32 {t['fp32_s'] * 1000:.1f} ms, ratio {t['ratio']:.2f}."
        )
    ref = q.get("fp32")
    if not ref:
        return [*lines, "", "No fp32 model's measurements to compare with (the backbone was not taken from one)."]
    real = card.metrics["real"]
    ours = headlines(card.metrics.get("robustness", {}).get("judged", {}))
    theirs: dict[str, dict[str, float]] = ref.get("robustness", {})

    def pair_row(label: str, a: dict, b: dict, key: str) -> str:
        if key not in a or key not in b:
            return f"| {label} | – | – | – |"
        return (
            f"| {label} | {a[key]:.3f} {_ci(a[key + '_ci95'])} | {b[key]:.3f} {_ci(b[key + '_ci95'])} "
            f"| {a[key] - b[key]:+.3f} |"
        )

    w8, w8_at = _worst_fpr05({k: v[FPR05] for k, v in ours.items()})
    w32, w32_at = _worst_fpr05({k: v[FPR05] for k, v in theirs.items()})
    met8 = sum(1 for k, v in ours.items() if ("/within" in k or "/cross" in k) and v[FPR05] <= TARGET_FPR)
    met32 = sum(1 for k, v in theirs.items() if ("/within" in k or "/cross" in k) and v[FPR05] <= TARGET_FPR)
    n8 = sum(1 for k in ours if "/within" in k or "/cross" in k)
    n32 = sum(1 for k in theirs if "/within" in k or "/cross" in k)
    lines += [
        "",
        f"Each model measured by its own build (same protocol, same seeds; the fp32 figures from `{ref['model_id']}`'s "
        "card). Real paintings, artists never fitted on:",
        "",
        "| measure | int8 | fp32 | int8 − fp32 |",
        "|---|---:|---:|---:|",
        pair_row("pair ROC AUC", real["pair"], ref["pair"], "auc"),
        pair_row("pair EER", real["pair"], ref["pair"], "eer"),
        pair_row("verify (leave-one-out) AUC", real["verify_loo"], ref["verify_loo"], "auc"),
        f"| worst FPR at max_fpr=0.05, held-out conditions | {w8:.3f} ({w8_at}) | {w32:.3f} ({w32_at}) "
        f"| {w8 - w32:+.3f} |",
        f"| conditions with FPR at max_fpr=0.05 ≤ {TARGET_FPR} | {met8} of {n8} | {met32} of {n32} | |",
        "",
        "Under each acquisition condition (held out; AUC, observed FPR at `max_fpr=0.05`, observed FPR at the "
        "default point):",
        "",
        "| condition | kind | AUC int8 | AUC fp32 | FPR@0.05 int8 | FPR@0.05 fp32 | default FPR int8 "
        "| default FPR fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, a in ours.items():
        b = theirs.get(key)
        name, kind = key.split("/")
        if b is None:
            lines.append(f"| {name} | {kind} | {a['auc']:.3f} | – | {a[FPR05]:.3f} | – | {a['default_fpr']:.3f} | – |")
        else:
            lines.append(
                f"| {name} | {kind} | {a['auc']:.3f} | {b['auc']:.3f} | {a[FPR05]:.3f} | {b[FPR05]:.3f} "
                f"| {a['default_fpr']:.3f} | {b['default_fpr']:.3f} |"
            )
    return lines


FPR05 = "fpr_max_fpr_0.05"  # the key `headlines` gives the observed FPR at max_fpr=0.05 (as cards store it)


def headlines(judged: dict) -> dict[str, dict[str, float]]:
    """Per row of a `judge` result ("<condition>/<kind>"): its AUC, observed FPR at max_fpr=0.05 (`FPR05`) and at
    the default point — the figures one model's report sets beside another's (an int8 card keeps its fp32
    reference's, training/realmodel.py `fp32_reference`)."""
    return {
        key: {
            "auc": row["auc"],
            FPR05: row["points"]["max_fpr<=0.05"]["observed_fpr"],
            "default_fpr": row["points"]["default"]["observed_fpr"],
        }
        for key, row in judged.items()
        if key != "error_versus_discard"
    }


def _rate(p: dict, which: str) -> str:
    lo, hi = p[f"observed_{which}_ci95"]
    claimed = p[f"claimed_{which}"]
    c = "–" if claimed != claimed else f"{claimed:.3f}"
    return f"{p[f'observed_{which}']:.3f} [{lo:.3f}, {hi:.3f}] ({c})"


def robustness_lines(card: Card) -> list[str]:
    """The REPORT section on acquisition conditions, with every target stated as met or missed."""
    rob = card.metrics.get("robustness")
    if not rob:
        return []
    return judged_lines(
        rob["judged"],
        rob.get("baseline") or {},
        rob["protocol"],
        card.calibration.quality,
        [b.min_quality for b in card.calibration.bands],
        "## Does it hold on photographs? (acquisition conditions, held out)",
    )


def judged_lines(
    judged: dict, base: dict, protocol: str, q: QualityModel | None, bands: Sequence[float], title: str
) -> list[str]:
    """A robustness table (training/evaluation/robustness.py `judge` or `judge_model` output) as markdown."""
    clean = judged["published/published"]
    lines = [
        "",
        title,
        "",
        f"Protocol: {protocol}.",
        "",
        "Each row: one condition applied to every painting. AUC [95 % CI]; observed rate [95 % CI] (claimed, from the "
        "band the measured quality picked); `refused`: pairs whose quality fell below the floor (the service answers "
        "422 `image_quality_too_low`). Targets: FPR at `max_fpr=0.05` ≤ 0.08; AUC within 0.03 of the published "
        "figure; default-point FPR within ±0.05 of the claim.",
        "",
        "| condition | kind | AUC | baseline AUC | FPR at max_fpr=0.05 | baseline FPR | default FPR | default FNR "
        "| refused | targets |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    missed: list[str] = []
    for key, row in judged.items():
        if key == "error_versus_discard":
            continue
        name, kind = key.split("/")
        p5, d = row["points"]["max_fpr<=0.05"], row["points"]["default"]
        b = base.get(key)
        checks = []
        if kind in ("within", "cross"):
            ok_fpr = p5["observed_fpr"] <= TARGET_FPR
            ok_auc = row["auc"] >= clean["auc"] - TARGET_AUC_DROP
            ok_def = (
                d["claimed_fpr"] == d["claimed_fpr"] and abs(d["observed_fpr"] - d["claimed_fpr"]) <= TARGET_DEFAULT
            )
            checks = [("FPR≤0.08", ok_fpr), ("AUC", ok_auc), ("default±0.05", ok_def)]
            missed += [f"{key} {label}" for label, ok in checks if not ok]
        b_auc = "–" if b is None else f"{b['auc']:.3f}"
        b_fpr = "–" if b is None else f"{b['points']['max_fpr<=0.05']['observed_fpr']:.3f}"
        marks = " ".join(("✓ " if ok else "✗ ") + label for label, ok in checks) or "–"
        lines.append(
            f"| {name} | {kind} | {row['auc']:.3f} {_ci(row['auc_ci95'])} | {b_auc} | {_rate(p5, 'fpr')} | {b_fpr} "
            f"| {_rate(d, 'fpr')} | {_rate(d, 'fnr')} | {row['refused']:.2f} | {marks} |"
        )
    n_checks = 3 * sum(1 for k in judged if k.endswith("/within") or k.endswith("/cross"))
    lines += [
        "",
        f"**Targets missed: {len(missed)} of {n_checks}.**" + (" " + "; ".join(missed) + "." if missed else ""),
    ]
    edc = judged.get("error_versus_discard")
    if edc and q is not None:
        lines += [
            "",
            "### Quality: what the measured quality predicts",
            "",
            f"Quality model: {q.target}; linear in {', '.join(q.features)} (fitted on {q.fitted_on}); floor "
            f"{q.floor:.2f}. Bands (lower edges): " + ", ".join(f"{b:g}" for b in bands) + ".",
            "",
            "Error versus discard (ISO/IEC 29794-1 style, pooled over every held-out condition's pairs, one fixed "
            "threshold: the published table's default): how the errors fall as the lowest-quality pairs are set "
            "aside. Setting pairs aside at random leaves the errors where they are.",
            "",
            "| set aside | FNR | FPR |",
            "|---:|---:|---:|",
            *[
                f"| {f:.0%} | {fn:.3f} | {fp:.3f} |"
                for f, fn, fp in zip(edc["fraction"], edc["fnr"], edc["fpr"], strict=True)
            ],
            f"| (random) | {edc['fnr_random'][0]:.3f} | {edc['fpr_random'][0]:.3f} |",
        ]
    return lines
