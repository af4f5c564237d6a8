"""Helpers for the portfolio tests (test_store, test_gallery, test_replicas): galleries on a SQLite file, works."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import select

from service.serving.model import Model
from service.storage.db import make_sessionmaker, open_database, sqlite_url
from service.storage.gallery import Gallery, ReferenceSpace
from service.storage.schema import WorkRow
from service.storage.store import NewWork


def make_gallery(data_dir: Path, model: Model, model_id: str | None = None) -> Gallery:
    db = open_database(sqlite_url(data_dir / "brushprint.db"))
    space = ReferenceSpace.of(model)
    return Gallery(db, data_dir, replace(space, model_id=model_id) if model_id else space, use_gpu=False)


def new_work(model: Model, seed: int, name: str | None = None) -> NewWork:
    data = f"picture-{seed}".encode() * 10
    emb = np.random.default_rng(seed).normal(size=model.embedding_dim).astype(np.float32)
    return NewWork(filename=name or f"w{seed}.png", data=data, sha256=hashlib.sha256(data).hexdigest(), embedding=emb)


def originals(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "originals").rglob("*") if p.is_file())


def db_work_ids(g: Gallery) -> set[str]:
    with make_sessionmaker(g.db)() as s:
        return set(s.scalars(select(WorkRow.id)).all())
