"""Corpora → one manifest of (image_id, path, artist, split), and artist-disjoint splits.

Readers: Painter by Numbers as published on Kaggle (`train_info.csv` or `all_data_info.csv` with image folders
`train/` and `test/`), folder-per-artist (`root/<artist>/*.jpg`), and the synthetic corpus written by
`training.data.synthetic` (folder-per-artist plus a `corpus.json`). Missing images are skipped and counted, a missing
column is an error naming it, images the contract's decoder refuses are dropped by `drop_unreadable`.

Splits are by artist, so validation and test measure what the service does: judge artists the model never saw.
The original work's leaky protocol (held-out images of training artists) is available as a separate
`test_seen` split, always reported apart.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from contract.decode import CORPUS_LIMITS, ImageError, decode_file

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
SPLITS = ("train", "val", "test", "test_seen")
CSV_FIELDS = ("image_id", "path", "artist", "split")
PBN_CSVS = ("all_data_info.csv", "train_info.csv")


@dataclass(frozen=True)
class Item:
    image_id: str
    path: Path
    artist: str
    split: str = ""


@dataclass(frozen=True)
class Manifest(Sequence[Item]):
    """An ordered, immutable list of items plus provenance (`meta`: source, skipped counts, ...)."""

    items: tuple[Item, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __init__(self, items: Iterable[Item] = (), meta: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "items", tuple(items))
        object.__setattr__(self, "meta", dict(meta or {}))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> Manifest: ...
    def __getitem__(self, index: int | slice) -> Item | Manifest:
        if isinstance(index, slice):
            return Manifest(self.items[index], self.meta)
        return self.items[index]

    def __repr__(self) -> str:
        return f"Manifest({len(self)} items, {len(self.artists())} artists)"

    def artists(self) -> list[str]:
        """Distinct artists, sorted."""
        return sorted({it.artist for it in self.items})

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """(int64 label per item, artist names) with `names[labels[i]] == items[i].artist`."""
        names = self.artists()
        index = {a: i for i, a in enumerate(names)}
        return np.fromiter((index[it.artist] for it in self.items), np.int64, len(self.items)), names

    def paths(self) -> list[Path]:
        return [it.path for it in self.items]

    def by_split(self, name: str) -> Manifest:
        return Manifest((it for it in self.items if it.split == name), self.meta)

    def filter(self, keep: Iterable[bool]) -> Manifest:
        return Manifest((it for it, k in zip(self.items, keep, strict=True) if k), self.meta)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per split (and "all"): images, artists, singletons (artists with exactly one image there)."""
        groups: dict[str, list[Item]] = defaultdict(list)
        for it in self.items:
            groups[it.split or "unsplit"].append(it)
        order = [s for s in SPLITS if s in groups] + sorted(set(groups) - set(SPLITS))
        out = {name: _counts(groups[name]) for name in order}
        out["all"] = _counts(self.items)
        return out

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_FIELDS)
            for it in self.items:
                w.writerow((it.image_id, str(it.path), it.artist, it.split))
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> Manifest:
        path = Path(path)
        rows = _read_csv(path, required=CSV_FIELDS)
        return cls(
            (Item(r["image_id"], Path(r["path"]), r["artist"], r["split"]) for r in rows),
            {"source": f"manifest:{path}"},
        )


def _counts(items: Sequence[Item]) -> dict[str, int]:
    per_artist = Counter(it.artist for it in items)
    return {
        "images": len(items),
        "artists": len(per_artist),
        "singletons": sum(1 for n in per_artist.values() if n == 1),
    }


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} (found: {', '.join(header) or 'no header'})"
            )
        reader.fieldnames = header
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes", "t", "y"}


def read_pbn(root: str | Path, csv_name: str | None = None) -> Manifest:
    """Painter by Numbers as published: `train_info.csv` or `all_data_info.csv` plus `train/` and `test/`.

    Without `csv_name`, `all_data_info.csv` is preferred when present (it also lists the `test/` images, which
    are labelled too), else `train_info.csv`. Rows whose image file is absent (not downloaded) are skipped and
    counted in `meta["missing_files"]`; rows without an artist in `meta["unlabelled"]`.
    """
    root = Path(root)
    if csv_name is None:
        found = [name for name in PBN_CSVS if (root / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{root}: no Painter by Numbers csv ({' or '.join(PBN_CSVS)})")
        csv_name = found[0]
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} does not exist")
    header = _read_header(csv_path)
    if "new_filename" in header or csv_name == "all_data_info.csv":
        rows = _read_csv(csv_path, required=("artist", "in_train", "new_filename"))
        entries = [(r["new_filename"], r["artist"], "train" if _truthy(r["in_train"]) else "test") for r in rows]
        flavour = "all_data_info"
    else:
        rows = _read_csv(csv_path, required=("filename", "artist"))
        entries = [(r["filename"], r["artist"], "train") for r in rows]
        flavour = "train_info"

    items, missing, unlabelled, seen = [], 0, 0, set()
    for filename, artist, folder in entries:
        if not artist:
            unlabelled += 1
            continue
        if filename in seen:  # a row listed twice would put one image in two splits
            continue
        path = root / folder / filename
        if not path.is_file():
            missing += 1
            continue
        seen.add(filename)
        items.append(Item(filename, path, artist))
    if missing or unlabelled:
        log.warning("%s: skipped %d rows with missing image files, %d without artist", csv_path, missing, unlabelled)
    meta = {
        "source": f"pbn:{root}",
        "csv": csv_name,
        "flavour": flavour,
        "rows": len(entries),
        "missing_files": missing,
        "unlabelled": unlabelled,
    }
    return Manifest(items, meta)


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def read_folders(root: str | Path) -> Manifest:
    """`root/<artist>/**/<image>`: the artist is the top-level folder name; hidden files and folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    items = []
    for artist_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in artist_dir.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not _hidden(p, root)
        )
        items += [Item(p.relative_to(root).as_posix(), p, artist_dir.name) for p in files]
    return Manifest(items, {"source": f"folders:{root}"})


def load_corpus(spec: str) -> Manifest:
    """`pbn:ROOT`, `folders:ROOT` or `synthetic:ROOT` (a corpus written by `training.data.synthetic.generate`)."""
    kind, sep, root = spec.partition(":")
    if not sep or not root:
        raise ValueError(f"corpus spec {spec!r}: expected pbn:ROOT, folders:ROOT or synthetic:ROOT")
    if kind == "pbn":
        return read_pbn(root)
    if kind == "folders":
        return read_folders(root)
    if kind == "synthetic":
        info_path = Path(root) / "corpus.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path} missing: write the corpus first (python -m training synth)")
        manifest = read_folders(root)
        info = json.loads(info_path.read_text())
        return Manifest(manifest, {**manifest.meta, "source": f"synthetic:{root}", "generator": info})
    raise ValueError(f"corpus spec {spec!r}: unknown kind {kind!r} (pbn, folders or synthetic)")


def check_image(path: str | Path) -> str | None:
    """None when the contract decodes the file (with `CORPUS_LIMITS`), else the reason."""
    try:
        decode_file(path, CORPUS_LIMITS)
    except ImageError as e:
        return f"{e.code}: {e.message}"
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


def drop_unreadable(manifest: Manifest, workers: int = 1) -> tuple[Manifest, int]:
    """Drop items the contract's decoder refuses (corrupt, truncated, not an image in an accepted format, too
    small, absurd proportions, animated: `CORPUS_LIMITS`); returns (kept, n_skipped)."""
    paths = manifest.paths()
    if workers > 1:  # Pillow decodes outside the GIL
        with ThreadPoolExecutor(workers) as pool:
            reasons = list(pool.map(check_image, paths))
    else:
        reasons = [check_image(p) for p in paths]
    for p, r in zip(paths, reasons, strict=True):
        if r is not None:
            log.warning("unreadable image skipped: %s (%s)", p, r)
    n_skipped = sum(r is not None for r in reasons)
    meta = {**manifest.meta, "unreadable": manifest.meta.get("unreadable", 0) + n_skipped}
    return Manifest((it for it, r in zip(manifest, reasons, strict=True) if r is None), meta), n_skipped


def _allocate(n: int, fractions: Sequence[float], minimum: Sequence[int]) -> list[int]:
    """Split n into len(fractions) counts ≈ n*fraction, each ≥ its minimum (where the fraction is > 0)."""
    counts = [max(mn, round(n * f)) if f > 0 else 0 for f, mn in zip(fractions, minimum, strict=True)]
    return counts


def split_artists(
    manifest: Manifest,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    seen_test_fraction: float = 0.0,
) -> Manifest:
    """Artist-disjoint `train`/`val`/`test`, plus optional `test_seen` (held-out images of train artists).

    Fractions are of artists, not images. Artists with ≥ 2 images and single-image artists are shuffled and
    divided separately in the same proportions, so every split gets its share of artists that can form
    positive pairs; val and test each get at least 2 such artists (when their fraction is > 0) and train at
    least 2, else this raises. Single-image artists are kept: they serve as negatives only.

    With `seen_test_fraction` > 0, each train artist with ≥ 2 images moves round(fraction × n) of its images
    (keeping at least one in train) to `test_seen`: the original leaky protocol, to be reported apart.
    Deterministic for a given manifest and seed; each image gets exactly one split.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"need 0 ≤ val, test and val + test < 1 (got val={val}, test={test})")
    if not 0 <= seen_test_fraction < 1:
        raise ValueError(f"seen_test_fraction must be in [0, 1) (got {seen_test_fraction})")
    per_artist = Counter(it.artist for it in manifest)
    multi = sorted(a for a, n in per_artist.items() if n >= 2)
    single = sorted(a for a, n in per_artist.items() if n == 1)
    need = 2 + (2 if val > 0 else 0) + (2 if test > 0 else 0)
    if len(multi) < need:
        raise ValueError(
            f"split needs at least {need} artists with ≥ 2 images (2 for train and 2 for each of val/test); "
            f"the corpus has {len(multi)}"
        )
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for group, minimum in ((multi, (2, 2)), (single, (0, 0))):
        order = [group[i] for i in rng.permutation(len(group))]
        n_val, n_test = _allocate(len(group), (val, test), minimum)
        if n_val + n_test > len(group) - minimum[0]:  # tiny corpora: keep the minimum for train
            n_val, n_test = (minimum[0] if val > 0 else 0), (minimum[1] if test > 0 else 0)
        for i, artist in enumerate(order):
            assignment[artist] = "val" if i < n_val else "test" if i < n_val + n_test else "train"

    split = [assignment[it.artist] for it in manifest]
    if seen_test_fraction > 0:
        by_artist: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(manifest):
            if split[i] == "train":
                by_artist[it.artist].append(i)
        for artist in sorted(by_artist):
            idx = by_artist[artist]
            k = min(round(seen_test_fraction * len(idx)), len(idx) - 1)
            for i in rng.choice(idx, size=k, replace=False) if k > 0 else ():
                split[i] = "test_seen"

    meta = {
        **manifest.meta,
        "split": {"val": val, "test": test, "seed": seed, "seen_test_fraction": seen_test_fraction, "by": "artist"},
    }
    return Manifest((replace(it, split=s) for it, s in zip(manifest, split, strict=True)), meta)
