"""`python -m training <command>`: the offline pipeline, one stage per command, or all of it.

    synth         write a synthetic corpus
    embed         corpus → artist-disjoint split → embeddings cache        (WORK/manifest.csv, embeddings.npy)
    train         fit pair heads on the cached embeddings                  (WORK/heads/)
    evaluate      calibration on val, metrics on unseen (and seen) test    (WORK/eval/, WORK/plots/)
    export        ONNX + parity + model.json + REPORT.md into --out
    run           embed → train → evaluate → export
    make-default  synth a corpus, then run: the shipped models/default

Stages communicate only through files in the work directory (WORK/run.json records the settings and the
time each stage took), so any stage can be rerun alone. Covered by tests/training/test_e2e.py.
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

RUN_FILE = "run.json"
DEFAULT_HEADS = ("seed", "symmetric")
# make-default: measured at about 13 minutes on 2 (shared) CPU cores; 24 per artist so that portfolio k=20 has
# 21-image artists to draw from
DEFAULT_ARTISTS, DEFAULT_PER_ARTIST, DEFAULT_SIZE = 350, 24, 256

log = logging.getLogger("training")


# ------------------------------------------------------------------------------------------- run state


class Work:
    """The work directory: caches, checkpoints, intermediate results, and run.json."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    manifest = property(lambda self: self.root / "manifest.csv")
    embeddings = property(lambda self: self.root / "embeddings.npy")
    cache = property(lambda self: self.root / "embed-cache")
    heads = property(lambda self: self.root / "heads")
    evals = property(lambda self: self.root / "eval")
    plots = property(lambda self: self.root / "plots")

    def state(self) -> dict:
        path = self.root / RUN_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def update(self, **kw) -> dict:
        state = {**self.state(), **kw}
        (self.root / RUN_FILE).write_text(json.dumps(state, indent=1, default=str) + "\n")
        return state

    def timed(self, stage: str, seconds: float) -> None:
        timings = self.state().get("timings", {})
        timings[stage] = round(seconds, 1)
        self.update(timings=timings)
        print(f"[{stage}] {seconds:.1f} s", flush=True)

    def require(self, key: str) -> object:
        state = self.state()
        if key not in state:
            raise SystemExit(f"{self.root / RUN_FILE} has no {key!r}: run the earlier stage first")
        return state[key]


def _weights(text: str | None) -> str | None:
    """CLI spelling → build_embedder's: "none" means random initialisation."""
    return None if text is None or text.lower() == "none" else text


def _split_arrays(manifest, embeddings: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split name → (embeddings, int labels); labels are global so an artist keeps one id everywhere."""
    labels, _ = manifest.labels()
    splits = np.array([it.split for it in manifest])
    return {
        s: (embeddings[splits == s], labels[splits == s])
        for s in ("train", "val", "test", "test_seen")
        if (splits == s).any()
    }


# ---------------------------------------------------------------------------------------------- stages


def stage_synth(root: Path, artists: int, per_artist: int, seed: int, size: int, workers: int) -> None:
    from training.synthetic import generate

    t = time.perf_counter()
    m = generate(root, artists, per_artist, seed=seed, size=size, progress=True, workers=workers)
    print(f"[synth] {len(m)} paintings by {artists} artists in {root} ({time.perf_counter() - t:.1f} s)", flush=True)


def stage_embed(
    work: Work,
    corpus: str,
    arch: str = "efficientnet_lite2",
    image_size: int = 224,
    weights: str = "auto",
    seed: int = 0,
    val: float = 0.15,
    test: float = 0.15,
    seen_test_fraction: float = 0.0,
    batch_size: int = 32,
) -> None:
    from training.backbones import build_embedder
    from training.datasets import drop_unreadable, load_corpus, split_artists
    from training.embed import embed_manifest

    t = time.perf_counter()
    manifest = load_corpus(corpus)
    manifest, skipped = drop_unreadable(manifest, workers=os.cpu_count() or 1)
    manifest = split_artists(manifest, val=val, test=test, seed=seed, seen_test_fraction=seen_test_fraction)
    manifest.to_csv(work.manifest)
    meta = dict(manifest.meta)
    if isinstance(meta.get("generator"), dict):  # the per-artist style dump belongs in corpus.json, not here
        meta["generator"] = {k: v for k, v in meta["generator"].items() if k != "artists"}
    work.update(
        corpus=corpus,
        corpus_meta=meta,
        unreadable_skipped=skipped,
        split_settings={"val": val, "test": test, "seed": seed, "seen_test_fraction": seen_test_fraction},
        summary=manifest.summary(),
        arch=arch,
        image_size=image_size,
        weights=weights,
        seed=seed,
    )
    work.timed("split", time.perf_counter() - t)

    t = time.perf_counter()
    model, spec = build_embedder(arch, weights=_weights(weights), image_size=image_size)
    emb = embed_manifest(manifest, model, spec, work.cache, batch_size=batch_size, progress=True)
    np.save(work.embeddings, np.asarray(emb, np.float32))
    work.update(embedding_dim=spec.embedding_dim, backbone_weights=spec.weights)
    work.timed("embed", time.perf_counter() - t)


def _load_split_arrays(work: Work):
    from training.datasets import Manifest

    manifest = Manifest.from_csv(work.manifest)
    emb = np.load(work.embeddings)
    if len(emb) != len(manifest):
        raise SystemExit(f"{work.embeddings} has {len(emb)} rows but {work.manifest} {len(manifest)}: rerun embed")
    return manifest, _split_arrays(manifest, emb)


def stage_train(work: Work, heads: Sequence[str], config) -> dict:
    from training.train import train_head

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


def _load_trained(work: Work, kind: str):
    from training.train import TrainConfig, load_head

    info_path = work.heads / f"{kind}.json"
    if not info_path.is_file():
        raise SystemExit(f"no trained {kind} head in {work.heads}: run train first")
    info = json.loads(info_path.read_text())
    kwargs = TrainConfig(**info["config"]).head_kwargs
    head = load_head(kind, int(work.require("embedding_dim")), work.heads / f"{kind}.best.weights.h5", kwargs)
    return head, info


def stage_evaluate(work: Work, heads: Sequence[str], n_pairs: int = 4000, n_trials: int = 1000) -> list:
    from training.evaluate import evaluate_head

    _, splits = _load_split_arrays(work)
    eval_splits = {s: splits[s] for s in ("val", "test", "test_seen") if s in splits}
    work.evals.mkdir(exist_ok=True)
    out = []
    for kind in heads:
        t = time.perf_counter()
        head, info = _load_trained(work, kind)
        ev = evaluate_head(
            head, eval_splits, plot_dir=work.plots, n_pairs=n_pairs, n_trials=n_trials, seed=work.state().get("seed", 0)
        )
        ev.train_summary = {k: v for k, v in info.items() if k not in ("history", "config")}
        _save_eval(ev, work.evals / f"{kind}.json")
        unseen = ev.metrics["unseen"]["pair"]
        print(
            f"[evaluate {kind}] val AUC {ev.val_auc:.3f}; unseen test AUC {unseen['auc']:.3f} EER {unseen['eer']:.3f}",
            flush=True,
        )
        work.timed(f"evaluate {kind}", time.perf_counter() - t)
        out.append(ev)
    return out


def _save_eval(ev, path: Path) -> None:
    data = {
        "kind": ev.kind,
        "calibration": ev.calibration.model_dump(mode="json"),
        "metrics": ev.metrics,
        "plots": ev.plots,
        "params": ev.params,
        "train_summary": ev.train_summary,
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def _load_eval(path: Path):
    from contract.card import Calibration
    from training.evaluate import HeadEvaluation

    d = json.loads(path.read_text())
    return HeadEvaluation(
        d["kind"],
        Calibration.model_validate(d["calibration"]),
        d["metrics"],
        d["plots"],
        d["params"],
        d["train_summary"],
    )


def stage_export(
    work: Work,
    out: Path,
    heads: Sequence[str] | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    command: str = "",
) -> Path:
    from training.backbones import build_embedder
    from training.datasets import Manifest
    from training.evaluate import choose_head, write_report
    from training.export import export_model

    t = time.perf_counter()
    heads = list(heads or [p.stem for p in sorted(work.evals.glob("*.json"))])
    evaluations = [_load_eval(work.evals / f"{k}.json") for k in heads]
    chosen, why = choose_head(evaluations)
    head, _ = _load_trained(work, chosen.kind)
    state = work.state()
    embedder, spec = build_embedder(state["arch"], weights=_weights(state["weights"]), image_size=state["image_size"])

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

    out = Path(out)
    if out.exists():
        # only our own kind of directory is replaced: never wipe something that is not a model dir
        if any(out.iterdir()) and not (out / "model.json").is_file():
            raise SystemExit(f"{out} exists and is not a model directory; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    summary = state.get("summary", {})
    training_data = {
        "corpus": state.get("corpus"),
        "source": state.get("corpus_meta", {}).get("source"),
        "generator": state.get("corpus_meta", {}).get("generator"),
        "unreadable_skipped": state.get("unreadable_skipped", 0),
        "split": state.get("split_settings"),
        "splits": summary,
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
        name=name,
        version=version,
    )
    for e in evaluations:
        for p in e.plots:
            shutil.copy2(work.plots / p, out / p)
    work.timed("export", time.perf_counter() - t)
    state = work.state()
    timings = {k: float(v) for k, v in state.get("timings", {}).items()}
    corpus = {"name": card.name, "corpus": state.get("corpus"), "source": training_data["source"]}
    if isinstance(training_data["generator"], dict):
        g = training_data["generator"]
        corpus["synthetic generator"] = ", ".join(
            f"{k}={g[k]}" for k in ("seed", "n_artists", "per_artist", "size") if k in g
        )
    corpus["unreadable images skipped"] = training_data["unreadable_skipped"]
    corpus["split"] = training_data["split"]
    backbone = {
        "arch": spec.arch,
        "input": f"{spec.preprocessing.crop[0]}x{spec.preprocessing.crop[1]}",
        "embedding_dim": spec.embedding_dim,
        "recipe": spec.recipe.description,
        "weights": spec.weights,
        "ONNX parity (max abs diff)": ", ".join(f"{k} {v:.2g}" for k, v in card.metrics["parity_max_abs_diff"].items()),
    }
    splits = {k: v for k, v in summary.items()}
    write_report(
        out / "REPORT.md",
        evaluations,
        chosen,
        why,
        corpus,
        splits,
        command or state.get("command", ""),
        timings,
        backbone,
    )
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


# ------------------------------------------------------------------------------------------------- CLI


def _train_config(args):
    from training.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        pairs_per_epoch=args.pairs_per_epoch,
        batch_size=args.batch_size,
        val_pairs=args.val_pairs,
        patience=args.patience,
        seed=args.seed,
        epochs_by_kind={"seed": args.seed_head_epochs},
    )


def _heads(text: str) -> list[str]:
    from training.heads import KINDS

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"heads must be a comma list of {KINDS}")
    return kinds


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="pbn:ROOT | folders:ROOT | synthetic:ROOT")
    p.add_argument("--arch", default="efficientnet_lite2")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--weights", default="auto", help="auto | none | imagenet | a local weights file")
    p.add_argument("--val", type=float, default=0.15, help="fraction of artists for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction of artists for the unseen test")
    p.add_argument(
        "--seen-test-fraction", type=float, default=0.0, help="images of train artists held out as test_seen"
    )
    p.add_argument("--embed-batch-size", type=int, default=32)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--pairs-per-epoch", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--val-pairs", type=int, default=4_000)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument(
        "--seed-head-epochs", type=int, default=10, help="epoch cap for the seed head (~10x slower per epoch)"
    )


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-pairs", type=int, default=4000)
    p.add_argument("--portfolio-trials", type=int, default=1000)


def _add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="model directory, e.g. models/NAME")
    p.add_argument("--name", default=None, help="model name (default: the --out folder name)")
    p.add_argument("--version", default="1.0.0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic corpus")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--artists", type=int, default=DEFAULT_ARTISTS)
    p.add_argument("--per-artist", type=int, default=DEFAULT_PER_ARTIST)
    p.add_argument("--size", type=int, default=DEFAULT_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)

    def work_arg(p, required=True):
        p.add_argument("--work", type=Path, required=required, help="work dir for caches, checkpoints, results")
        p.add_argument("--seed", type=int, default=0)

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

    p = sub.add_parser("make-default", help="synthetic corpus + run: the shipped default model")
    p.add_argument("--out", type=Path, default=Path("models/default"))
    p.add_argument("--work", type=Path, default=Path("runs/default"))
    p.add_argument("--artists", type=int, default=DEFAULT_ARTISTS)
    p.add_argument("--per-artist", type=int, default=DEFAULT_PER_ARTIST)
    p.add_argument("--size", type=int, default=DEFAULT_SIZE)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seen-test-fraction", type=float, default=0.15)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    _add_train_args(p)
    _add_eval_args(p)
    return parser


def _pipeline(work: Work, a: argparse.Namespace, command: str) -> Path:
    stage_embed(
        work, a.corpus, a.arch, a.image_size, a.weights, a.seed, a.val, a.test, a.seen_test_fraction, a.embed_batch_size
    )
    stage_train(work, a.heads, _train_config(a))
    stage_evaluate(work, a.heads, a.eval_pairs, a.portfolio_trials)
    return stage_export(work, a.out, a.heads, a.name, a.version, command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    command = "python -m training " + shlex.join(argv)
    start = time.perf_counter()
    if args.command == "synth":
        stage_synth(args.out, args.artists, args.per_artist, args.seed, args.size, args.workers)
    elif args.command == "embed":
        stage_embed(
            Work(args.work),
            args.corpus,
            args.arch,
            args.image_size,
            args.weights,
            args.seed,
            args.val,
            args.test,
            args.seen_test_fraction,
            args.embed_batch_size,
        )
    elif args.command == "train":
        stage_train(Work(args.work), args.heads, _train_config(args))
    elif args.command == "evaluate":
        stage_evaluate(Work(args.work), args.heads, args.eval_pairs, args.portfolio_trials)
    elif args.command == "export":
        stage_export(Work(args.work), args.out, args.heads, args.name, args.version)
    elif args.command == "run":
        work = Work(args.work)
        work.update(command=command, timings={})
        _pipeline(work, args, command)
    elif args.command == "make-default":
        corpus_root = args.work / "corpus"
        t = time.perf_counter()
        stage_synth(corpus_root, args.artists, args.per_artist, args.seed, args.size, args.workers)
        work = Work(args.work)
        work.update(command=command, timings={"synth": round(time.perf_counter() - t, 1)})
        defaults = {"corpus": f"synthetic:{corpus_root}", "arch": "efficientnet_lite2", "weights": "auto"}
        defaults |= {"val": 0.15, "test": 0.15, "embed_batch_size": 32, "heads": list(DEFAULT_HEADS)}
        defaults |= {"name": None, "version": "1.0.0"}
        _pipeline(work, argparse.Namespace(**vars(args), **defaults), command)
    print(f"[{args.command}] done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0
