"""service/storage/replicas.py: the version bookkeeping, alone and between two galleries sharing one database file."""

from __future__ import annotations

import threading
from pathlib import Path

from service.serving.model import Model
from service.storage.replicas import ReplicaSync
from service.storage.store import Committed
from tests.service.galleries import make_gallery, new_work


def test_applied_only_when_nobody_else_wrote() -> None:
    stored = {"version": 4}
    reloads: list[int] = []

    def reload() -> None:
        reloads.append(stored["version"])
        sync.loaded(stored["version"])

    sync = ReplicaSync(lambda: stored["version"], reload, threading.RLock())
    sync.loaded(4)
    assert not sync.sync() and reloads == []  # nothing changed: no reload
    assert sync.applied(Committed(4, 5)) and sync.version == 5  # our own write, right after the version we hold
    # someone wrote (version 6) in between: the caller must reload
    assert not sync.applied(Committed(6, 7)) and sync.version == 5
    stored["version"] = 8
    assert sync.sync() and reloads == [8] and sync.version == 8


def test_two_galleries_on_one_database_follow_each_other(tmp_path: Path, model: Model) -> None:
    a, b = make_gallery(tmp_path, model), make_gallery(tmp_path, model)
    a.create_artist("monet", "Claude Monet")
    works = a.add_works("monet", [new_work(model, s) for s in range(3)])
    assert len(b) == 0  # b's index is only brought up to date by the explicit step
    b.sync()
    assert b.portfolio("monet").work_ids == [w.id for w in works]
    # b writes; a's next write lands after a version it has not seen, so a reloads instead of patching
    b.delete_work("monet", works[0].id)
    (added,) = a.add_works("monet", [new_work(model, 9)])
    assert set(a.index.work_ids) == {works[1].id, works[2].id, added.id}
    a.index.check()
    b.sync()
    assert b.index.work_ids == a.index.work_ids
