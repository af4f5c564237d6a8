"""Uploaded originals on disk, content-addressed (`data_dir/originals/ab/<sha256>.bin`), so identical uploads share
one file and a reindex can re-embed every work from its bytes.

Each file is written atomically (tmp file, fsync, rename, fsync dir): a crash leaves either the whole file or
none. Callers write originals *before* committing the rows that point at them, so a committed work always has
its bytes. Covered by tests/service/test_originals.py.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


class OriginalStore:
    """Uploaded bytes under `data_dir/originals`, addressed by their sha256."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "originals"

    def relpath(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256 hex digest")
        return f"originals/{sha256[:2]}/{sha256}.bin"

    def put(self, sha256: str, data: bytes) -> tuple[str, bool]:
        """Write atomically; returns (relative path, whether this call created the file)."""
        rel = self.relpath(sha256)
        target = self.data_dir / rel
        if target.is_file():
            return rel, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return rel, True

    def read(self, rel: str) -> bytes:
        return (self.data_dir / rel).read_bytes()

    def remove(self, rel: str) -> None:
        (self.data_dir / rel).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
