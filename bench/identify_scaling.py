"""Identify scaling: the shortlist step of /identify — the top artists for one query over 1k, 10k and 100k
stored references — with faiss (the index as `service/storage/gallery.py` builds it) against brute-force numpy
(`refs @ q`, argpartition), the way a user without an index would do it.

Both paths take the same shortlist of nearest references and rank artists by their best reference, so they
return the same artists; only the search differs. Vectors are random unit vectors of the model's reference
dimension (the projection for a symmetric head): the search cost does not depend on their values.

    python -m bench.identify_scaling [--quick] [--sizes 1000,10000,100000] [--dim D] [--providers cuda]
"""

from __future__ import annotations

import sys

import numpy as np

from bench import common as C

REFS_PER_ARTIST = 10


def model_reference_dim() -> tuple[int, str]:
    """The dimension the gallery indexes for the model under test, read from its card (no sessions needed)."""
    from contract.card import load_card

    for where in (C.DEFAULT_MODEL_DIR, C.STANDIN_DIR):
        try:
            card = load_card(where, verify_files=False)
        except Exception:
            continue
        name = where.relative_to(C.ROOT)
        proj = card.head.projection
        if proj is not None and proj.output_dim:
            return proj.output_dim, f"{proj.output_dim} (the projection of {name})"
        return card.backbone.embedding_dim, f"{card.backbone.embedding_dim} (the embedding of {name})"
    return 256, "256 (the symmetric head's default projection size; no model card found)"


def rank_artists(pairs: list[tuple[str, float]], k: int) -> list[str]:
    """Artists by their best reference in the shortlist; the same step for both paths."""
    best: dict[str, float] = {}
    for artist, sim in pairs:
        if sim > best.get(artist, -np.inf):
            best[artist] = sim
    return sorted(best, key=best.__getitem__, reverse=True)[:k]


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="stored references (default 1000,10000,100000; quick 1000,10000)")
    p.add_argument("--dim", type=int, default=None, help="vector dimension (default: the model's reference dim)")
    p.add_argument("--k", type=int, default=5, help="artists returned")
    p.add_argument("--shortlist", type=int, default=200, help="nearest references fetched (identify_shortlist)")
    p.add_argument("--threads", type=int, default=None, help="cap faiss/numpy threads (default: library defaults)")
    args = p.parse_args(argv)

    import faiss

    from service.storage.gallery import ReferenceIndex

    use_gpu = args.providers == "cuda"
    if use_gpu and faiss.get_num_gpus() == 0:
        raise SystemExit("--providers cuda: this faiss sees no GPU (install faiss-gpu)")
    with C.limit_threads(args.threads):
        threads = faiss.omp_get_max_threads()
    device = f"faiss GPU ×{faiss.get_num_gpus()}" if use_gpu else "faiss CPU"
    sizes = C.parse_sizes(args.sizes or ("1000,10000" if args.quick else "1000,10000,100000"))
    dim, dim_note = (args.dim, f"{args.dim} (--dim)") if args.dim else model_reference_dim()
    report = C.Report("identify_scaling", "Identify scaling: top-k artists over N references", C.command_line())
    report.quick = args.quick

    rng = np.random.default_rng(0)
    all_refs = rng.normal(0, 1, (max(sizes), dim)).astype(np.float32)
    all_refs /= np.linalg.norm(all_refs, axis=1, keepdims=True)
    work_ids = [f"w{i}" for i in range(max(sizes))]
    artist_ids = [f"a{i // REFS_PER_ARTIST}" for i in range(max(sizes))]
    queries = rng.normal(0, 1, (64, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    repeat, budget = (200, 3.0) if args.quick else (500, 10.0)

    rows, data = [], {}
    limit = C.limit_threads(args.threads)
    limit.__enter__()
    for n in sizes:
        refs = all_refs[:n]
        index = ReferenceIndex(dim, use_gpu)
        index.reset(work_ids[:n], artist_ids[:n], refs)
        shortlist = min(args.shortlist, n)
        it = iter(range(10**9))

        def via_faiss(index=index, shortlist=shortlist, it=it) -> list[str]:
            q = queries[next(it) % len(queries)]
            return rank_artists([(h.artist_id, h.similarity) for h in index.search(q, shortlist)], args.k)

        def via_numpy(refs=refs, shortlist=shortlist, it=it) -> list[str]:
            q = queries[next(it) % len(queries)]
            sims = refs @ (q / np.linalg.norm(q))
            top = np.argpartition(-sims, shortlist - 1)[:shortlist]
            return rank_artists([(artist_ids[i], float(sims[i])) for i in top], args.k)

        # ReferenceIndex sets the thread count the service runs with (one on CPU); the alternative column keeps
        # faiss's default, to show why
        gallery_threads = faiss.omp_get_max_threads()

        def via_faiss_mt(via_faiss=via_faiss, gallery_threads=gallery_threads) -> list[str]:
            faiss.omp_set_num_threads(threads)
            try:
                return via_faiss()
            finally:
                faiss.omp_set_num_threads(gallery_threads)

        # same answer from both, or the comparison is meaningless
        agree = via_faiss(it=iter([0])) == via_numpy(it=iter([0]))
        fns = {"faiss": via_faiss, "numpy": via_numpy}
        if not use_gpu and threads > 1:
            fns["faiss_mt"] = via_faiss_mt
        st = C.measure_interleaved(fns, repeat, warmup=3, budget_s=budget)
        f, b = st["faiss"], st["numpy"]
        r = C.ratio(b.p50_ms, f.p50_ms)
        data[n] = {**{k: vars(v) for k, v in st.items()}, "speedup_p50": r, "same_artists": agree}
        row = [f"{n:,}", C.fmt(f.p50_ms, 3), C.fmt(f.p99_ms, 3)]
        if "faiss_mt" in st:
            row += [C.fmt(st["faiss_mt"].p50_ms, 3), C.fmt(st["faiss_mt"].p99_ms, 3)]
        row += [C.fmt(b.p50_ms, 3), C.fmt(b.p99_ms, 3), f"**{r:.2f}×**", "yes" if agree else "NO"]
        rows.append(row)

    limit.__exit__(None, None, None)
    report.table(
        f"Top-{args.k} artists from a {args.shortlist}-reference shortlist, one query at a time",
        ["references", "faiss as the gallery runs it p50 ms", "p99 ms"]
        + ([f"faiss ({threads} threads) p50 ms", "p99 ms"] if not use_gpu and threads > 1 else [])
        + ["numpy p50 ms", "p99 ms", "faiss speed-up", "same artists"],
        rows,
    )
    report.note(
        f"Vectors: random unit vectors, dim {dim_note}, {REFS_PER_ARTIST} references per artist; "
        f"{device}; numpy BLAS with {'its default' if not args.threads else args.threads} threads; "
        "all timed alternately, one query per call; speed-up = numpy p50 ÷ faiss p50 (the gallery's threads)."
    )
    report.note(
        "faiss: `service.storage.index.ReferenceIndex` (IndexFlatIP over L2-normalised vectors, exact), its `search`; "
        "numpy: `refs @ q` over the same normalised vectors, `argpartition` for the shortlist."
    )
    report.data = {"dim": dim, "device": device, "sizes": data, "k": args.k, "shortlist": args.shortlist}
    big = sizes[-1]
    report.headline = (
        f"{big:,} references: faiss p50 {data[big]['faiss']['p50_ms']:.2f} ms vs numpy "
        f"{data[big]['numpy']['p50_ms']:.2f} ms ({data[big]['speedup_p50']:.2f}×) [{device}]"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
