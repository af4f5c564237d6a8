"""Operator commands of `python -m service` beyond serving and keys: schema, backup, restore, bulk enrolment, upgrade.

    python -m service db upgrade                 bring the database schema to this release's revision (Alembic,
                                                 under the migration lock; service/storage/db.py)
    python -m service db current                 the database's revision and this release's

    python -m service export --out FILE          one checksummed archive of the whole deployment (service/ops/backup.py)
    python -m service import FILE                restore it into an empty deployment; re-embeds when the model differs
    python -m service drill --out FILE           export, restore into an empty deployment, and check that a fixed set of
                                                 compare/verify/identify questions get identical answers (drill.py)
    python -m service enrol ROOT                 enrol ROOT/<artist id>/<images>, creating artists as needed
    python -m service upgrade --to DIR           re-embed with the model in DIR while serving, then switch every
                                                 replica at once (service/ops/upgrade.py); --abort drops a staged one

Each prints one JSON summary on stdout (progress bars and errors on stderr) and exits 0 on success, 1 when
something was refused. `service/__main__.py` registers them with `add_commands` and runs them with `run`.
Covered by tests/service/test_backup.py (export, import, drill, enrol), tests/service/test_upgrade.py (upgrade) and
tests/service/test_migrations.py (db).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from contract.decode import ImageError
from service.config import Settings
from service.errors import Invalid, ServiceError, UnknownArtist

if TYPE_CHECKING:
    from service.serving.runtime import Runtime

COMMANDS = ("db", "export", "import", "drill", "enrol", "upgrade")
# what refuses one file or artist (a caller's error); anything else is a bug and ends the run
REFUSALS = (ServiceError, ImageError)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})


def add_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="the database schema: migrate it to this release, or show its revision")
    db_sub = db.add_subparsers(dest="db_command", metavar="{upgrade,current}", required=True)
    db_sub.add_parser("upgrade", help="apply every migration this release has that the database lacks")
    db_sub.add_parser("current", help="print the database's schema revision and this release's")
    export = sub.add_parser("export", help="write one checksummed backup archive (may run while serving)")
    export.add_argument("--out", required=True, help="archive file to write (written atomically)")
    export.add_argument("--no-progress", action="store_true")
    restore = sub.add_parser("import", help="restore an archive into an empty deployment")
    restore.add_argument("archive")
    restore.add_argument("--no-progress", action="store_true")
    drill = sub.add_parser("drill", help="export, restore into an empty deployment, and compare answers")
    drill.add_argument("--out", required=True, help="archive file to write (kept: it is a backup like any other)")
    drill.add_argument("--target", help="data dir of the deployment to restore into (default: a temporary one)")
    drill.add_argument("--target-database-url", help="its database (default: a SQLite file in --target)")
    drill.add_argument("--no-progress", action="store_true")
    enrol = sub.add_parser("enrol", help="enrol a folder-per-artist tree: ROOT/<artist id>/<image files>")
    enrol.add_argument("root")
    enrol.add_argument("--no-progress", action="store_true")
    upgrade = sub.add_parser("upgrade", help="switch the serving model while serving (re-embeds first)")
    which = upgrade.add_mutually_exclusive_group(required=True)
    which.add_argument("--to", metavar="DIR", help="the new model's directory, as every replica sees it")
    which.add_argument("--abort", action="store_true", help="drop a staged model left by an interrupted upgrade")
    upgrade.add_argument("--wait", type=float, default=120.0, help="seconds to wait for replicas to stage it")
    upgrade.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.ops.backup import BackupError
    from service.ops.upgrade import UpgradeError

    try:
        if args.command == "db":
            return _db(args, settings)
        if args.command == "upgrade":
            return _upgrade(args, settings)
        if args.command == "export":
            return _export(args, settings)
        if args.command == "import":
            return _import(args, settings)
        if args.command == "drill":
            return _drill(args, settings)
        return _enrol(args, settings)
    except (BackupError, UpgradeError) as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from service.storage.db import current_revision, head_revision, make_engine, migrate

    assert settings.database_url is not None
    db = make_engine(settings.database_url)
    try:
        if args.db_command == "upgrade":
            before, after = migrate(db)
            _print({"before": before, "after": after, "head": head_revision()})
        else:
            _print({"current": current_revision(db), "head": head_revision()})
    finally:
        db.dispose()
    return 0


def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from service.ops.upgrade import abort_upgrade, run_upgrade

    if args.abort:
        db = _database(settings)
        try:
            _print({"aborted": abort_upgrade(db)})
        finally:
            db.dispose()
        return 0
    r = run_upgrade(
        settings, args.to, wait_s=args.wait, progress=not args.no_progress, print_fn=lambda m: print(m, file=sys.stderr)
    )
    _print(
        {
            "old_model": r.old_model,
            "new_model": r.new_model,
            "switched": r.switched,
            "embedded": r.embedded,
            "replicas": r.replicas,
            "seconds": round(r.seconds, 2),
        }
    )
    return 0


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    from service.storage.db import open_database

    assert settings.database_url is not None
    return open_database(settings.database_url, settings.migrate_on_start)


def _print(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True))


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from service.ops.backup import export_archive

    db = _database(settings)
    try:
        r = export_archive(db, settings.data_dir, args.out, progress=not args.no_progress)
    finally:
        db.dispose()
    _print(
        {
            "archive": str(r.path),
            "bytes": r.bytes,
            "counts": r.counts,
            "originals": r.originals,
            "models": r.models,
            "gallery_version": r.gallery_version,
            "left_out": r.left_out,
        }
    )
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from service.ops.backup import ServingModel, check_archive, restore_archive
    from service.serving.runtime import Runtime

    checked = check_archive(args.archive)  # refuse a bad archive before loading the model
    runtime = Runtime.from_settings(settings)
    try:
        r = restore_archive(
            runtime.db, settings.data_dir, checked, ServingModel.of(runtime), progress=not args.no_progress
        )
        references = len(runtime.rebuild().gallery)  # the restored gallery, loaded as a server loads it
        model_id = runtime.model_id
    finally:
        runtime.close()
    _print(
        {
            "counts": r.counts,
            "originals": r.originals,
            "archive_models": r.models,
            "model": model_id,
            "reembedded": r.reembedded,
            "references": references,
            "keys_skipped": r.keys_skipped,
            "keys_revoked": r.keys_revoked,
        }
    )
    return 0


def _drill(args: argparse.Namespace, settings: Settings) -> int:
    from service.ops.drill import run_drill

    r = run_drill(settings, args.out, args.target, args.target_database_url, progress=not args.no_progress)
    _print(
        {
            "archive": str(r.export.path),
            "counts": r.export.counts,
            "gallery_version": r.export.gallery_version,
            "questions": r.questions,
            "identical": r.identical,
            "differences": r.differences,
            "live_moved": r.live_moved,
            "seconds": round(r.seconds, 2),
        }
    )
    if r.live_moved:
        print("the gallery changed while the drill ran; run it again when it is quiet", file=sys.stderr)
    if not r.questions:
        print("the gallery holds no works: the drill restored it but had nothing to ask", file=sys.stderr)
    return 0 if r.passed else 1


def folder_tree(root: Path) -> list[tuple[str, list[Path]]]:
    """(artist id, image files) for every sub-folder of `root`, sorted; hidden entries ignored."""
    if not root.is_dir():
        raise Invalid("invalid_request", f"{root} is not a directory")
    tree = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        tree.append((d.name, files))
    return tree


def _enrol(args: argparse.Namespace, settings: Settings) -> int:
    from service.serving.runtime import Runtime

    tree = folder_tree(Path(args.root))
    runtime = Runtime.from_settings(settings)
    try:
        summary = asyncio.run(enrol_tree(runtime, tree, settings.max_files_per_request, progress=not args.no_progress))
    finally:
        runtime.close()
    _print(summary)
    return 1 if summary["refused"] else 0


async def enrol_tree(
    runtime: Runtime, tree: Sequence[tuple[str, list[Path]]], chunk: int, progress: bool = False
) -> dict[str, Any]:
    """Enrol each artist's files in chunks (one transaction each). Works already in the portfolio are skipped, so
    a rerun after an interruption continues where it stopped; a chunk holding a bad file is retried file by
    file so only that file is refused (listed with its error code)."""
    portfolios = runtime.portfolios
    await runtime.start()
    artists_created, enrolled, skipped = 0, 0, 0
    refused: list[dict[str, str]] = []
    total = sum(len(files) for _, files in tree)
    try:
        with tqdm(total=total, desc="enrol", unit="image", disable=not progress) as bar:
            for artist_id, files in tree:
                try:
                    portfolios.get_artist(artist_id)
                except UnknownArtist:
                    try:
                        portfolios.create_artist(artist_id, artist_id)
                    except ServiceError as e2:
                        refused += [{"file": str(p), "code": e2.code, "message": e2.message} for p in files]
                        bar.update(len(files))
                        continue
                    artists_created += 1
                have = {w.sha256 for w in portfolios.list_works(artist_id)}
                todo: list[tuple[str, bytes]] = []
                for p in files:
                    data = p.read_bytes()
                    sha = hashlib.sha256(data).hexdigest()
                    if sha in have:  # enrolled by an earlier run, or the same picture twice in the folder
                        skipped += 1
                        bar.update()
                    else:
                        have.add(sha)
                        todo.append((str(p), data))
                for start in range(0, len(todo), chunk):
                    part = todo[start : start + chunk]
                    try:
                        enrolled += len(await portfolios.add_works(artist_id, [(Path(n).name, d) for n, d in part]))
                    except REFUSALS:
                        for name, data in part:
                            try:
                                enrolled += len(await portfolios.add_works(artist_id, [(Path(name).name, data)]))
                            except REFUSALS as e:
                                refused.append({"file": name, "code": e.code, "message": e.message})
                    bar.update(len(part))
    finally:
        await runtime.stop()
    return {
        "artists": len(tree),
        "artists_created": artists_created,
        "enrolled": enrolled,
        "skipped_existing": skipped,
        "refused": refused,
    }
