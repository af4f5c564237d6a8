"""Keeping this process's in-memory index of one collection in step with other processes sharing the database
(replicas on PostgreSQL, the CLI), through the version every write stamps on the collection it changes
(service/storage/store.py: the `gallery_state` counter's new value, so it only grows).

`ReplicaSync` remembers the version the index reflects. After its own committed write, the gallery asks
`applied(committed)`: True when the collection was at the index's version just before that write (the index is
updated in place, exactly), else another process wrote too and it reloads.
Before reading the index, the scorer calls `sync()` as an explicit step: a reload happens only when another
process moved the version. Covered by tests/service/test_replicas.py and, across two apps on PostgreSQL, by
tests/service/test_postgres.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from service.storage.store import Committed


class ReplicaSync:
    def __init__(self, current_version: Callable[[], int], reload: Callable[[], None], lock: threading.RLock):
        """`current_version()` reads the store's version; `reload()` rebuilds the index and calls `loaded`;
        `lock` is the one the gallery holds while it writes or reloads."""
        self._current_version = current_version
        self._reload = reload
        self._lock = lock
        self.version = -1  # the version the in-memory index reflects; -1 before the first load

    def loaded(self, version: int) -> None:
        self.version = version

    def applied(self, committed: Committed) -> bool:
        """After committing a change: True when the index was at the collection's version just before it, so
        updating it in place is exact; else another process wrote too, and the caller reloads instead."""
        if committed.before == self.version:
            self.version = committed.after
            return True
        return False

    def sync(self) -> bool:
        """Reload if another process changed works or embeddings since the last load; True if it reloaded."""
        if self._current_version() == self.version:
            return False  # the common case, without waiting on the lock behind a write in progress
        with self._lock:
            # re-read: the difference may have been this process's own write, applied while we waited
            if self._current_version() != self.version:
                self._reload()
                return True
        return False
