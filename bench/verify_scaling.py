"""Verify scaling: the cost of scoring one query against a portfolio of 10 … 10,000 references, after the
query's embedding is known — brushprint's path against the naive one.

- brushprint: the symmetric head's reference projections are computed once at enrolment, so a verify projects
  the query once and runs only the small comparator over the stored projections, then aggregates (what
  `service/serving/model.py` `reference_vectors` / `score_against` do for the service);
- naive: the full pair head on every (query, reference) embedding pair, as the original seed approach scores
  a portfolio (re-projecting every reference on every request), batched 4,096 pairs per call;
- seed (full runs, when TensorFlow is installed): the original 19M-parameter concatenation MLP on every pair,
  both orders averaged, at this model's embedding dimension with random weights (speed only).

Reference embeddings are random non-negative vectors of the model's embedding dimension: the arithmetic does
not depend on their values. Prints p50/p99, the speed-up and the growth exponent (log-log slope; 1 = linear).

    python -m bench.verify_scaling [--quick] [--sizes 10,100,1000,10000] [--model-dir DIR] [--providers cuda]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import common as C
from contract.aggregation import aggregate

NAIVE_CHUNK = 4096  # pairs per head call: batched, so the naive path is not penalised by per-call overhead


class Paths:
    """The three ways of scoring a query against N references, over one loaded model."""

    def __init__(self, model_dir: Path, providers: str):
        self.model = C.load_model(model_dir, providers)
        self.card = self.model.card
        self.provider = self.model.providers[0]
        self.aggregation = self.card.calibration.aggregation
        self.top_m = self.aggregation.top_m
        self.dim = self.model.embedding_dim
        self.symmetric = self.model.has_projection
        self.seed = None

    def precompute(self, refs: np.ndarray) -> np.ndarray:
        """What enrolment stores per reference (the projection for a symmetric head)."""
        return self.model.reference_vectors(refs)

    def brushprint(self, query: np.ndarray, stored: np.ndarray) -> float:
        """What `Scorer.verify` runs after the embedding: the query's reference vector (one projection), the
        comparator against every stored vector, then the card's aggregation."""
        q = self.model.reference_vectors(query)[0]
        return aggregate(self.model.score_against(q, stored), self.aggregation)

    def naive(self, query: np.ndarray, refs: np.ndarray) -> float:
        return aggregate(_pairs(self.model.pair_scores, query, refs), self.aggregation)

    def seed_head(self, query: np.ndarray, refs: np.ndarray) -> float:
        sess, inputs, output = self.seed

        def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return sess.run([output], {inputs[0]: a, inputs[1]: b})[0].reshape(-1)

        return aggregate(_pairs(run, query, refs), self.aggregation)

    def add_seed_head(self, workdir: Path, providers: list[str]) -> None:
        """Export the original seed head (random weights, this embedding dim) with tf2onnx for the comparison."""
        from training.backbone.export import to_onnx
        from training.heads.trained import INPUT_A, INPUT_B, OUTPUT, build_seed

        heads = build_seed(self.dim)
        path = to_onnx(heads.pair, {INPUT_A: (self.dim,), INPUT_B: (self.dim,)}, OUTPUT, workdir / "seed_head.onnx")
        sess = C.ort_session(path, providers)
        self.seed = (sess, (INPUT_A, INPUT_B), sess.get_outputs()[0].name)
        self.seed_params = heads.params


def _pairs(score, query: np.ndarray, refs: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, refs.shape[0], NAIVE_CHUNK):
        r = refs[i : i + NAIVE_CHUNK]
        out.append(score(np.repeat(query.reshape(1, -1), len(r), axis=0), r))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="portfolio sizes (default 10,100,1000,10000)")
    p.add_argument("--model-dir", default=None, help="model directory (default models/default, else the dev model)")
    p.add_argument("--seed-head", choices=("auto", "yes", "no"), default="auto", help="also time the seed head")
    args = p.parse_args(argv)
    providers = C.ort_providers(args.providers)
    sizes = C.parse_sizes(args.sizes or "10,100,1000,10000")
    report = C.Report("verify_scaling", "Verify scaling: one query against N references", C.command_line(), args.quick)

    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        model_dir, which = C.resolve_model_dir(args.model_dir, Path(tmp), build=not args.quick)
        paths = Paths(model_dir, args.providers)
        want_seed = args.seed_head == "yes" or (args.seed_head == "auto" and not args.quick)
        if want_seed:
            try:
                paths.add_seed_head(Path(tmp), providers)
            except ImportError as e:
                if args.seed_head == "yes":
                    raise
                report.note(f"seed head not timed: {e} (needs the [train] extra)")

        rng = np.random.default_rng(0)
        refs_all = np.abs(rng.normal(0, 1, (max(sizes), paths.dim))).astype(np.float32)
        query = np.abs(rng.normal(0, 1, (paths.dim,))).astype(np.float32)
        repeat = 30 if args.quick else 200
        budget = 3.0 if args.quick else 20.0
        rows, data = [], {}
        for n in sizes:
            refs = refs_all[:n]
            stored = paths.precompute(refs)
            fns = {
                "brushprint": lambda stored=stored: paths.brushprint(query, stored),
                "naive": lambda refs=refs: paths.naive(query, refs),
            }
            if paths.seed is not None:
                fns["seed"] = lambda refs=refs: paths.seed_head(query, refs)
            # round-robin, so load from other processes falls on every path alike
            st = C.measure_interleaved(fns, repeat, warmup=1, budget_s=budget)
            b, nv = st["brushprint"], st["naive"]
            entry = {"brushprint": vars(b), "naive": vars(nv), "speedup_p50": C.ratio(nv.p50_ms, b.p50_ms)}
            row = [
                f"{n:,}",
                C.fmt(b.p50_ms, 3),
                C.fmt(b.p99_ms, 3),
                C.fmt(nv.p50_ms, 3),
                C.fmt(nv.p99_ms, 3),
                f"**{entry['speedup_p50']:.1f}×**",
            ]
            if paths.seed is not None:
                s = st["seed"]
                entry["seed"] = vars(s)
                entry["seed_speedup_p50"] = C.ratio(s.p50_ms, b.p50_ms)
                row += [C.fmt(s.p50_ms, 3), C.fmt(s.p99_ms, 3), f"{entry['seed_speedup_p50']:.0f}×"]
            rows.append(row)
            data[n] = entry

    headers = ["references", "brushprint p50 ms", "p99 ms", "naive p50 ms", "p99 ms", "speed-up"]
    if paths.seed is not None:
        headers += ["seed head p50 ms", "p99 ms", "speed-up vs seed"]
    report.table("Scoring one query against N references (after the query's embedding)", headers, rows)
    ns = sorted(data)
    slope_b = C.loglog_slope(ns, [data[n]["brushprint"]["p50_ms"] for n in ns])
    slope_n = C.loglog_slope(ns, [data[n]["naive"]["p50_ms"] for n in ns])
    tail = ns[-2:] if len(ns) >= 2 else ns
    slope_tail = C.loglog_slope(tail, [data[n]["brushprint"]["p50_ms"] for n in tail])
    report.table(
        "Growth exponent of p50 in N (log-log slope; 1.0 = linear)",
        ["path", "over all sizes", f"between {tail[0]:,} and {tail[-1]:,}"],
        [
            ["brushprint", f"{slope_b:.2f}", f"{slope_tail:.2f}"],
            ["naive", f"{slope_n:.2f}", f"{C.loglog_slope(tail, [data[n]['naive']['p50_ms'] for n in tail]):.2f}"],
        ],
    )
    report.data = {
        "model": which,
        "model_dir": str(model_dir),
        "head": paths.card.head.kind,
        "embedding_dim": paths.dim,
        "symmetric": paths.symmetric,
        "provider": paths.provider,
        "sizes": data,
        "slope_brushprint": slope_b,
        "slope_naive": slope_n,
        "slope_brushprint_tail": slope_tail,
    }
    report.note(f"Model: {which}; head `{paths.card.head.kind}`, embedding dim {paths.dim}; provider {paths.provider}.")
    report.note(
        "brushprint = `Model.reference_vectors(query)` then `Model.score_against(query vector, stored reference "
        "vectors)` + top-"
        f"{paths.top_m} mean; naive = `Model.pair_scores` (head.onnx) on every (query, reference) pair in "
        f"chunks of {NAIVE_CHUNK:,}, "
        "same aggregation. Reference embeddings are random (timing does not depend on values)."
    )
    if not paths.symmetric:
        report.note("This model's head is not symmetric: its reference vectors are the embeddings themselves.")
    if paths.seed is not None:
        report.note(f"seed head: the original concat MLP ({paths.seed_params:,} parameters), random weights.")
    big = ns[-1]
    p50 = data[big]["brushprint"]["p50_ms"]
    if 10_000 in data:
        b10k = data[10_000]["brushprint"]["p50_ms"]
        report.target("10,000 references: p50 ≤ 50 ms", f"{b10k:.2f} ms", b10k <= 50)
    report.target(
        "cost grows no faster than linearly (log-log slope ≤ 1)",
        f"{slope_b:.2f} over all sizes ({slope_tail:.2f} over the last decade)",
        slope_b <= 1.0,
    )
    report.headline = (
        f"{big:,} references: brushprint p50 {p50:.2f} ms (target ≤ 50 ms), "
        f"{data[big]['speedup_p50']:.1f}× faster than the naive pair head; growth exponent {slope_b:.2f} "
        f"[{paths.provider}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
