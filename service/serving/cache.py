"""The embedding cache (issue 16): uploads already embedded, so a picture sent again skips decoding, the quality
step and the backbone — a dealer compares one candidate against many, a client retries, a picture just compared
is enrolled next.

A `PictureCache` is part of a serving bundle (service/serving/bundle.py): a model swap, an upgrade or a rebuild
brings a new, empty one, so an entry is only ever read under the model, quality rules and recipe that made it.
An entry is a `Picture` (service/serving/embedder.py: sha256, sizes, measured quality, per-crop vectors and
embedding — no pixels, no bytes), under a `Key` of

- the collection: a hit answers faster than a miss, and one dealer must not learn from a reply's speed that
  another sent the same picture, so the same bytes in two collections are two entries, each made by a miss;
- the collection's generation: `forget(collection)` (the collection deleted) drops its entries and moves it on,
  so a request still in flight for the deleted collection cannot put one back where a collection made again
  under the same id would find it;
- the model id (the bundle's own already; kept in the key so that no entry can answer for another model);
- the image limits the upload is decoded under (`contract.decode.ImageLimits`): a hit needs today's limits, so
  bytes cached before a limit change are a miss, decoded and refused as ever (a larger `max_upload_bytes`, a
  format no longer allowed), and `decode_pixels` changes the picture that is embedded;
- the sha256 of the upload's bytes (`contract.decode.digest`), computed before decoding and handed to the
  decoder, which records it as `Decoded.sha256` without hashing again; `put` refuses a picture whose digest is
  not its key's.

Single flight: while a picture is being embedded under a key, another request (or another upload of the same
request) that misses under the same key waits for that embedding instead of decoding and embedding the same
bytes again (`flight` / `land`) — ten concurrent compares of one candidate against ten others embed it once.
The key holds the collection, so no request ever waits on another collection's upload. A flight that ends
without a picture (its upload refused, its request gone) lets each waiter embed on its own, so a waiter gets
exactly the answer or the error it would have had alone. Flights are futures of the event loop that serves the
requests; they exist only while the cache is on.

Only pictures that passed the bundle's quality floor are cached (a refused upload raises before there is a
Picture), so a hit is a picture the same rules accepted. The bound is in bytes (`Picture.nbytes`; cachetools'
`LRUCache` with `getsizeof`), the least recently used entries going first; a picture larger than the whole bound
is not kept. Entries are stored with their arrays read-only and owning their memory (not views of a batch's
output), so what the bound counts is what is held and no caller can change a cached vector. Thread-safe: requests
look up from worker threads and store from the event loop, under one lock. Hits, misses and evictions are counted
in a `CacheStats` shared by every bundle's cache of the process, so for /metrics they only grow; `shared`
counts the misses a flight answered. Covered by
tests/service/test_cache.py and tests/reliability/test_isolation.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from cachetools import LRUCache

from contract.decode import ImageLimits
from service.serving.picture import Picture

MB = 1_000_000


class Key(NamedTuple):
    collection: str
    generation: int
    model_id: str
    limits: ImageLimits
    sha256: str


@dataclass
class CacheStats:
    """Hits, misses and evictions (entries the byte bound pushed out; not those of a deleted collection) of every
    cache of one process, bundles come and gone included; `shared`: misses answered by another upload's embedding
    in flight under the same key (single flight)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    shared: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, hits: int = 0, misses: int = 0, evictions: int = 0, shared: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.evictions += evictions
            self.shared += shared


class _Lru(LRUCache[Key, "Picture"]):
    """cachetools' LRU over pictures' bytes, telling `on_evict` of each entry the bound pushes out."""

    def __init__(self, max_bytes: int, on_evict: Callable[[], None]):
        super().__init__(max_bytes, getsizeof=_nbytes)
        self._on_evict = on_evict

    def popitem(self) -> tuple[Key, Picture]:  # cachetools calls it only to make room
        item = super().popitem()
        self._on_evict()
        return item


def _nbytes(picture: Picture) -> int:
    return picture.nbytes


def _frozen(a: np.ndarray) -> np.ndarray:
    """`a` owning its memory (a view of a whole batch's output would keep the batch alive) and read-only."""
    out = a if a.flags.owndata and a.base is None else a.copy()
    out.setflags(write=False)
    return out


class PictureCache:
    """An LRU of `Picture`s bounded by `max_bytes` (0: off — every lookup misses, nothing is kept or counted)."""

    def __init__(self, max_bytes: int = 0, stats: CacheStats | None = None):
        self.max_bytes = max(0, int(max_bytes))
        self.stats = stats if stats is not None else CacheStats()
        self._lock = threading.Lock()
        self._generation: dict[str, int] = {}
        self._lru = self._empty()
        self._flights: dict[Key, asyncio.Future[Picture | None]] = {}

    def _empty(self) -> _Lru:
        return _Lru(max(1, self.max_bytes), lambda: self.stats.count(evictions=1))

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def key(self, collection: str, model_id: str, limits: ImageLimits, sha256: str) -> Key:
        with self._lock:
            return Key(collection, self._generation.get(collection, 0), model_id, limits, sha256)

    def get(self, key: Key) -> Picture | None:
        """The picture under `key` (now the most recently used), or None; counted as a hit or a miss."""
        if not self.enabled:
            return None
        with self._lock:
            found = self._lru.get(key)
        self.stats.count(hits=found is not None, misses=found is None)
        return found

    def put(self, key: Key, picture: Picture) -> Picture:
        """Keep `picture` under `key` (the least recently used entries make room) unless the cache is off, the
        picture is larger than the whole bound, or the key's collection was forgotten since the key was made.
        Returns the picture as kept (read-only arrays), or as given when it is not kept."""
        if picture.sha256 != key.sha256:
            raise ValueError(f"a picture of sha256 {picture.sha256} cannot be cached under {key.sha256}")
        if not self.enabled or picture.nbytes > self.max_bytes:
            return picture
        kept = dataclasses.replace(picture, crops=_frozen(picture.crops), embedding=_frozen(picture.embedding))
        with self._lock:
            if key.generation == self._generation.get(key.collection, 0):
                self._lru[key] = kept
        return kept

    def flight(self, key: Key) -> tuple[asyncio.Future[Picture | None], bool]:
        """Single flight, on the event loop: the future of `key`'s picture, and True when the caller leads it (it
        embeds the upload and must `land` the future, with the picture or None, whatever happens) or False when
        another upload already does (the caller awaits the future; None: embed on its own)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            fut = self._flights.get(key)
            if fut is not None and not fut.done() and fut.get_loop() is loop:
                return fut, False
            fut = loop.create_future()
            self._flights[key] = fut
            return fut, True

    def land(self, key: Key, fut: asyncio.Future[Picture | None], picture: Picture | None) -> None:
        """End the flight `fut` that `flight(key)` gave its leader: its waiters get `picture` (None: not made)."""
        with self._lock:
            if self._flights.get(key) is fut:
                del self._flights[key]
        if not fut.done():
            fut.set_result(picture)

    @property
    def in_flight(self) -> int:
        """Keys being embedded now by a leading upload."""
        with self._lock:
            return len(self._flights)

    def forget(self, collection: str) -> int:
        """Drop every entry of `collection` (deleted), and refuse entries keyed before now; returns how many went."""
        with self._lock:
            self._generation[collection] = self._generation.get(collection, 0) + 1
            gone = [k for k in self._lru if k.collection == collection]
            for k in gone:
                del self._lru[k]
            return len(gone)

    def clear(self) -> None:
        """Drop every entry (not counted as evictions)."""
        with self._lock:
            self._lru = self._empty()  # a new one: an older cachetools clears through popitem, which counts

    @property
    def nbytes(self) -> int:
        """The bytes the kept pictures count (`Picture.nbytes`)."""
        with self._lock:
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def kept(self) -> list[Key]:
        """The keys kept, in no particular order."""
        with self._lock:
            return list(self._lru)

    def __contains__(self, key: object) -> bool:
        """Whether `key` is kept (neither counted nor made more recent)."""
        with self._lock:
            return key in self._lru
