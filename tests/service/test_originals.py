"""service/storage/originals.py: content-addressed, atomically written originals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.storage.originals import OriginalStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    data = b"some painting bytes"
    sha = hashlib.sha256(data).hexdigest()
    rel, created = store.put(sha, data)
    assert rel == f"originals/{sha[:2]}/{sha}.bin" and created
    assert (tmp_path / rel).read_bytes() == data == store.read(rel)
    assert store.put(sha, data) == (rel, False)  # the same content again: the file is shared, not rewritten
    assert not list((tmp_path / "originals").rglob(".tmp-*"))
    store.remove(rel)
    store.remove(rel)  # removing twice is harmless
    assert not (tmp_path / rel).exists()


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OriginalStore(tmp_path)
    data = b"x" * 100
    sha = hashlib.sha256(data).hexdigest()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("service.storage.originals.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(sha, data)
    assert [p for p in (tmp_path / "originals").rglob("*") if p.is_file()] == []


def test_only_sha256_names_are_paths(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    for bad in ("../../etc/passwd", "ab", "G" * 64, "A" * 64):
        with pytest.raises(ValueError):
            store.relpath(bad)
