"""What the default answers say about real paintings: the three-way verdict of verify, and identify's open-set verdict.

On a folder-per-artist corpus (the Met set, `make data/met`), with the service's runtime as the server builds it
(no HTTP):

- verify: one artist's first three works as the portfolio (van Gogh's, by default); every painting by another
  artist verified against it at the default strictness — how many are called "consistent", "inconclusive" and
  "not consistent" — beside how many the former default (a match at the equal-error point) called a match; and
  the artist's own remaining works;
- identify: every artist with two or more works enrolled; every painting by an artist with one work (so enrolled
  under no one) identified — how many the open-set verdict calls "consistent" with some enrolled artist.

The shipped model's whitening was fitted on these paintings: the counts illustrate what the answers say, they
are not held-out error rates (the README's tables and the model's REPORT are).

    python -m bench.verdicts [--corpus data/met] [--artist vincent-van-gogh] [--model-dir models/default]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import common as C

VERDICTS = ("consistent", "inconclusive", "not_consistent")


def _paintings(corpus: Path) -> dict[str, list[Path]]:
    return {
        d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        for d in sorted(corpus.iterdir())
        if d.is_dir()
    }


async def measure(model_dir: Path, corpus: Path, artist: str, data_dir: Path) -> dict:
    from contract.decode import ImageError
    from service.config import Settings
    from service.errors import ServiceError
    from service.serving.runtime import Runtime

    works = _paintings(corpus)
    if len(works.get(artist, [])) < 4:
        raise SystemExit(f"{artist} needs at least 4 paintings in {corpus} (3 for the portfolio, 1 to verify)")
    settings = Settings(data_dir=data_dir, model_dir=model_dir, gpu_index=False, providers="cpu")
    runtime = Runtime.build(C.load_model(model_dir, "cpu"), settings)
    await runtime.start()
    out: dict = {"artist": artist, "verify": {}, "identify": {}}
    try:
        # ---- verify against one artist's three works
        runtime.portfolios.create_artist(artist, artist)
        await runtime.portfolios.add_works(artist, [(p.name, p.read_bytes()) for p in works[artist][:3]])
        verdicts: Counter[str] = Counter()
        former = refused = 0
        for name, paths in works.items():
            for p in paths if name != artist else []:
                try:
                    v = await runtime.scorer.verify(p.read_bytes(), artist)
                except (ImageError, ServiceError):
                    refused += 1
                    continue
                verdicts[v.verdict] += 1
                former += v.score >= v.points.equal_error.threshold
        own = [(await runtime.scorer.verify(p.read_bytes(), artist)).verdict for p in works[artist][3:]]
        out["verify"] = {"others": dict(verdicts), "former_match": former, "refused": refused, "own": own}

        # ---- identify: every artist with 2+ works enrolled; the one-work artists' paintings identified
        runtime.portfolios.delete_artist(artist)
        for name, paths in works.items():
            if len(paths) >= 2:
                runtime.portfolios.create_artist(name, name)
                await runtime.portfolios.add_works(
                    name, [(p.name, p.read_bytes()) for p in paths], allow_duplicate=True
                )
        runtime.bundle.calibrator.refresh()
        open_set: Counter[str] = Counter()
        refused = 0
        for paths in works.values():
            for p in paths if len(paths) == 1 else []:
                try:
                    found = await runtime.scorer.identify(p.read_bytes(), k=1)
                except (ImageError, ServiceError):
                    refused += 1
                    continue
                open_set[found.open_set.verdict] += 1
                used = found.open_set.calibration
        out["identify"] = {
            "enrolled_artists": sum(len(p) >= 2 for p in works.values()),
            "not_enrolled": dict(open_set),
            "refused": refused,
            "trials": (used.genuine_pairs, used.impostor_pairs),
        }
        return out
    finally:
        await runtime.stop()
        runtime.close()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="data/met", help="folder per artist (default data/met)")
    p.add_argument("--artist", default="vincent-van-gogh", help="whose first three works are the portfolio")
    p.add_argument("--model-dir", default="models/default", help="model directory (default models/default)")
    args = p.parse_args(argv)
    report = C.Report("verdicts", "The default verdicts on real paintings", C.command_line(), args.quick)
    with tempfile.TemporaryDirectory(prefix="brushprint-bench-") as tmp:
        got = asyncio.run(measure(Path(args.model_dir), Path(args.corpus), args.artist, Path(tmp) / "data"))
    v, i = got["verify"], got["identify"]
    n = sum(v["others"].values())
    rows = "\n".join(f"| {k} | {v['others'].get(k, 0)} |" for k in VERDICTS)
    report.tables.append(
        (
            f"verify against {args.artist}'s first 3 works: {n} paintings by other artists",
            "| verdict | paintings |\n|---|---:|\n" + rows,
        )
    )
    m = sum(i["not_enrolled"].values())
    rows = "\n".join(f"| {k} | {i['not_enrolled'].get(k, 0)} |" for k in VERDICTS)
    report.tables.append(
        (
            f"identify with {i['enrolled_artists']} artists enrolled: {m} paintings by artists not enrolled "
            f"(open-set trials {i['trials'][0]} genuine / {i['trials'][1]} impostor)",
            "| open-set verdict | paintings |\n|---|---:|\n" + rows,
        )
    )
    report.notes.append(
        f"the former default (a match at the equal-error point) called {v['former_match']} of the {n} a match; "
        f"{args.artist}'s other works: {', '.join(v['own'])}; refused for quality: {v['refused']} (verify), "
        f"{i['refused']} (identify)"
    )
    report.data = got
    report.headline = (
        f"{v['others'].get('consistent', 0)} of {n} other artists' paintings consistent with "
        f"{args.artist} (former default: {v['former_match']} matches); {i['not_enrolled'].get('consistent', 0)} "
        f"of {m} paintings by artists not enrolled consistent with an enrolled one"
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
