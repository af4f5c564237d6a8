"""The restore drill: prove that a backup restores to the same answers, on the day it is taken.

    python -m service drill --out FILE [--target DIR] [--target-database-url URL]

exports the deployment (`export_archive`: one snapshot, the archive kept at FILE), restores the archive into an
empty deployment (a temporary directory with its own SQLite file unless `--target` / `--target-database-url` name
one; it must be empty), and asks both the same fixed set of questions, drawn from the snapshot itself: for each of
the first `ARTISTS` artists by id that have works, the original of their earliest work is compared with the next
artist's and with the artist's own second work, verified against its artist (at the default point and at
`max_fpr=0.05`) and against the next artist, and identified (`k=5`). Every answer — score, threshold, rates,
calibration, quality, references, or the error code a question is refused with — must be identical. The same
model serves both sides (the live model directory); both sides' gallery calibration is rebuilt before asking.

A deployment that changes while the drill runs may answer differently for that reason alone: the drill then says
so (`live_moved`) and fails; run it again when the gallery is quiet. Covered by tests/service/test_backup.py.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.decode import ImageError
from service.config import Settings
from service.errors import ServiceError
from service.ops.backup import ExportResult, Records, RestoreResult, ServingModel, export_archive, restore_archive
from service.serving.runtime import Runtime
from service.serving.strictness import Strictness

ARTISTS = 6


@dataclass(frozen=True)
class Question:
    kind: str  # "compare", "verify" or "identify"
    images: tuple[str, ...]  # sha256 of the originals asked about
    artist_id: str | None = None
    strictness: Strictness = Strictness()
    label: str = ""


@dataclass
class DrillResult:
    export: ExportResult
    restore: RestoreResult
    questions: int
    identical: int
    differences: list[dict[str, Any]] = field(default_factory=list)
    live_moved: bool = False  # the live gallery changed while the drill ran
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.differences and not self.live_moved and self.identical == self.questions


def questions(records: Records, artists: int = ARTISTS) -> list[Question]:
    """The fixed questions for an archive's records (see the module's docstring)."""
    works: dict[str, list[Any]] = {}
    for w in sorted(records.works, key=lambda w: (w.created, w.id)):
        works.setdefault(w.artist_id, []).append(w)
    chosen = sorted(works)[:artists]
    out: list[Question] = []
    for i, a in enumerate(chosen):
        q = works[a][0]
        other = chosen[(i + 1) % len(chosen)]
        mine = f"work {q.id} of {a}"
        out.append(Question("compare", (q.sha256, works[other][0].sha256), label=f"compare {mine} with {other}'s"))
        if len(works[a]) > 1:
            out.append(Question("compare", (q.sha256, works[a][1].sha256), label=f"compare {mine} with its second"))
        out.append(Question("verify", (q.sha256,), a, label=f"verify {mine} against {a}"))
        out.append(Question("verify", (q.sha256,), a, Strictness(max_fpr=0.05), f"verify {mine} at max_fpr 0.05"))
        if other != a:
            out.append(Question("verify", (q.sha256,), other, label=f"verify {mine} against {other}"))
        out.append(Question("identify", (q.sha256,), label=f"identify {mine}"))
    return out


async def answer(runtime: Runtime, q: Question, originals: dict[str, bytes]) -> dict[str, Any]:
    """The answer as plain data: the decision's every field, or the code the question was refused with."""
    images = [originals[sha] for sha in q.images]
    try:
        if q.kind == "compare":
            return asdict(await runtime.scorer.compare(images[0], images[1], q.strictness))
        if q.kind == "verify":
            assert q.artist_id is not None
            return asdict(await runtime.scorer.verify(images[0], q.artist_id, q.strictness))
        return asdict(await runtime.scorer.identify(images[0], 5))
    except (ServiceError, ImageError) as e:
        return {"error": e.code}


async def _ask(live: Runtime, restored: Runtime, qs: list[Question], originals: dict[str, bytes]) -> list[tuple]:
    await live.start()
    await restored.start()
    try:
        return [(q, await answer(live, q, originals), await answer(restored, q, originals)) for q in qs]
    finally:
        await restored.stop()
        await live.stop()


def run_drill(
    settings: Settings,
    out: str | Path,
    target: str | Path | None = None,
    target_url: str | None = None,
    progress: bool = False,
) -> DrillResult:
    """Export the deployment `settings` describe to `out`, restore it into an empty one and compare answers."""
    from service.ops.backup import check_archive

    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="brushprint-drill-")) if target is None else None
    target_dir = Path(target) if target is not None else scratch
    assert target_dir is not None
    live = Runtime.from_settings(settings)
    try:
        exported = export_archive(live.db, settings.data_dir, out, progress=progress)
        over = {"data_dir": target_dir, "database_url": target_url, "admin_key": None}
        restored = Runtime.build(live.bundle.model, Settings(**{**settings.model_dump(), **over}))
        try:
            checked = check_archive(exported.path)
            result = restore_archive(restored.db, target_dir, checked, ServingModel.of(restored), progress)
            live.rebuild()
            restored.rebuild()
            moved = live.bundle.gallery.replicas.version != exported.gallery_version
            for side in (live, restored):
                side.bundle.calibrator.refresh()
            qs = questions(checked.records)
            wanted = {sha for q in qs for sha in q.images}
            store = restored.bundle.gallery.originals
            originals = {sha: store.read(store.relpath(sha)) for sha in wanted}
            asked = asyncio.run(_ask(live, restored, qs, originals))
            moved = moved or live.bundle.gallery.store.version() != exported.gallery_version
        finally:
            restored.close()
    finally:
        live.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    differences = [{"question": q.label, "live": a, "restored": b} for q, a, b in asked if a != b]
    return DrillResult(
        export=exported,
        restore=result,
        questions=len(asked),
        identical=len(asked) - len(differences),
        differences=differences,
        live_moved=moved,
        seconds=time.perf_counter() - t0,
    )
