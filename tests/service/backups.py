"""Helpers for the backup tests (tests/service/test_backup.py, test_backup_snapshot.py): the CLI, galleries written
straight through the storage layer, targets to restore into, their state, and re-sealed (tampered) archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from service.__main__ import main
from service.ops.backup import TABLES, ServingModel
from service.serving.model import Model
from service.serving.runtime import Runtime
from service.storage.gallery import Gallery, ReferenceSpace
from service.storage.store import NewWork
from tests.service.apitools import make_settings
from tests.service.conftest import png

Edit = Callable[[dict[str, list[dict[str, Any]]], dict[str, bytes]], None]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def picture_work(model: Model, seed: int) -> NewWork:
    """A work with a real picture (restore decodes every original) and a random embedding (nothing scores it)."""
    data = png(seed)
    emb = np.random.default_rng(seed).normal(size=model.embedding_dim).astype(np.float32)
    return NewWork(filename=f"w{seed}.png", data=data, sha256=hashlib.sha256(data).hexdigest(), embedding=emb)


def gallery(model: Model, data_dir: Path, db: sa.Engine) -> Gallery:
    return Gallery(db, data_dir, ReferenceSpace.of(model), use_gpu=False)


@contextmanager
def target(model: Model, model_dir: Path, data_dir: Path, database_url: str | None) -> Iterator[Runtime]:
    """An empty deployment (its own runtime around the shared model) to restore into."""
    runtime = Runtime.build(model, make_settings(model_dir, data_dir, database_url=database_url))
    try:
        yield runtime
    finally:
        runtime.close()


def restore_into(runtime: Runtime, archive: Path):  # type: ignore[no-untyped-def]
    from service.ops.backup import restore_archive

    return restore_archive(runtime.db, runtime.settings.data_dir, archive, ServingModel.of(runtime))


def state(db: sa.Engine, data_dir: Path) -> dict[str, Any]:
    """Everything a restore could change: every table's rows and the originals on disk."""
    with db.connect() as c:
        rows = {
            t: sorted(map(repr, c.execute(sa.text(f"SELECT * FROM {t}")).all()))
            for t in ("artists", "works", "embeddings", "api_keys", "audit", "gallery_state")
        }
    files = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "originals").rglob("*") if p.is_file())
    return {**rows, "originals": files}


def read_archive(archive: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, bytes], dict[str, Any]]:
    """(records by table, originals by sha256, manifest)."""
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(members.pop("manifest.json"))
    records = {t: [json.loads(line) for line in members.pop(f"{t}.jsonl").splitlines()] for t in TABLES}
    originals = {name[len("originals/") : -len(".bin")]: data for name, data in members.items()}
    return records, originals, manifest


def reseal(archive: Path, out: Path, edit: Edit, edit_manifest: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The archive with its records (and originals) changed by `edit`, its manifest by `edit_manifest`, and every
    checksum recomputed: tampered, but consistent with its own manifest."""
    records, originals, manifest = read_archive(archive)
    edit(records, originals)
    if edit_manifest is not None:
        edit_manifest(manifest)
    files: dict[str, str] = {}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            files[name] = hashlib.sha256(data).hexdigest()

        for sha, data in originals.items():
            add(f"originals/{sha}.bin", data)
        for t in TABLES:
            add(f"{t}.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in records[t]))
        manifest["files"] = files
        info = tarfile.TarInfo("manifest.json")
        body = json.dumps(manifest).encode()
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return out
