"""The in-memory vector index: reference vectors in row order, a faiss IndexFlatIP over their L2-normalised
copies (exact; on GPU when asked), and per-artist row slices for verify. Knows nothing of the database: the
gallery fills it from the store and keeps it in step. Covered by tests/service/test_index.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class Hit:
    work_id: str
    artist_id: str
    similarity: float


class ReferenceIndex:
    """Reference vectors in row order + faiss inner-product index over their normalised copies."""

    def __init__(self, dim: int, use_gpu: bool):
        self.dim = dim
        self.use_gpu = use_gpu
        if not use_gpu:
            # Every search here is one query over a flat index: faiss's OpenMP threads only add fork/join cost
            # and fight onnxruntime for the cores (bench/identify_scaling.py: 2 threads lost to numpy, 1 won).
            faiss.omp_set_num_threads(1)
        self.work_ids: list[str] = []
        self.artist_ids: list[str] = []
        self.vectors = np.zeros((0, dim), np.float32)
        self._index = self._new_index(self.vectors)
        self._rows_by_artist: dict[str, np.ndarray] | None = None

    def _new_index(self, vectors: np.ndarray) -> faiss.Index:
        index: faiss.Index = faiss.IndexFlatIP(self.dim)
        if self.use_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        if len(vectors):
            index.add(_normalised(vectors))
        return index

    def __len__(self) -> int:
        return len(self.work_ids)

    def reset(self, work_ids: list[str], artist_ids: list[str], vectors: np.ndarray) -> None:
        self.work_ids, self.artist_ids = list(work_ids), list(artist_ids)
        self.vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        self._index = self._new_index(self.vectors)
        self._rows_by_artist = None

    def add(self, work_ids: list[str], artist_ids: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        self.work_ids += work_ids
        self.artist_ids += artist_ids
        self.vectors = np.concatenate([self.vectors, vectors])
        self._index.add(_normalised(vectors))
        self._rows_by_artist = None

    def remove(self, work_ids: set[str]) -> None:
        keep = [i for i, w in enumerate(self.work_ids) if w not in work_ids]
        if len(keep) == len(self.work_ids):
            return
        # a flat index is rebuilt in one pass; cheaper and GPU-friendlier than remove_ids bookkeeping
        self.reset([self.work_ids[i] for i in keep], [self.artist_ids[i] for i in keep], self.vectors[keep])

    def rows_of(self, artist_id: str) -> np.ndarray:
        if self._rows_by_artist is None:
            groups: dict[str, list[int]] = {}
            for i, a in enumerate(self.artist_ids):
                groups.setdefault(a, []).append(i)
            self._rows_by_artist = {a: np.asarray(r, np.int64) for a, r in groups.items()}
        return self._rows_by_artist.get(artist_id, np.zeros((0,), np.int64))

    def search(self, query: np.ndarray, n: int) -> list[Hit]:
        n = min(n, len(self.work_ids))
        if n <= 0:
            return []
        sims, rows = self._index.search(_normalised(query.reshape(1, -1)), n)
        return [
            Hit(self.work_ids[r], self.artist_ids[r], float(s)) for s, r in zip(sims[0], rows[0], strict=True) if r >= 0
        ]

    def check(self) -> None:
        """Internal consistency (used by tests): faiss holds exactly the rows we think it does."""
        assert self._index.ntotal == len(self.work_ids) == len(self.artist_ids) == len(self.vectors)


def _normalised(v: np.ndarray) -> np.ndarray:
    out = np.array(v, dtype=np.float32, copy=True, order="C").reshape(-1, v.shape[-1])
    faiss.normalize_L2(out)
    return out


def gpu_available() -> bool:
    try:
        return faiss.get_num_gpus() > 0
    except AttributeError:  # faiss-cpu builds may lack the symbol
        return False
