"""Backbone embeddings for a manifest, batched, with a resumable on-disk cache.

Cache layout: `cache_dir/<key>/` where `key` hashes the backbone identity (arch, weights, preprocessing,
embedding recipe, dimension), so a changed backbone never reads stale vectors. Inside, `identity.json` (what the
key stands for) and `shards/*.npz`, each holding the embeddings of one batch keyed by the sha256 of the image
file's bytes. Shards are written to a temporary name and renamed, so an interrupted run leaves only whole
shards and the next run computes only what is missing. Identical files share one embedding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contract.card import sha256_file
from contract.decode import CORPUS_LIMITS, ImageError, decode_file
from contract.recipe import combine, model_inputs
from training.data.datasets import Manifest

log = logging.getLogger(__name__)

# 2: images decoded by the contract (EXIF orientation, alpha on white, 16-bit scaled), so pictures that
# format 1 read raw through Pillow are embedded again rather than read back stale
CACHE_FORMAT = 2


class _Spec(Protocol):
    arch: str
    embedding_dim: int
    recipe: Any
    preprocessing: Any
    weights: str | None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic (Preprocessing, EmbeddingRecipe)
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def backbone_identity(spec: _Spec) -> dict[str, Any]:
    """Everything that changes the embedding of an image."""
    return {
        "cache_format": CACHE_FORMAT,
        "arch": spec.arch,
        "weights": spec.weights,
        "preprocessing": _jsonable(spec.preprocessing),
        "recipe": _jsonable(spec.recipe),
        "embedding_dim": int(spec.embedding_dim),
    }


def cache_key(spec: _Spec) -> str:
    blob = json.dumps(backbone_identity(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class EmbeddingCache:
    """Embeddings of one backbone, keyed by image content sha256, stored as atomically written shards."""

    def __init__(self, cache_dir: str | Path, spec: _Spec) -> None:
        self.dir = Path(cache_dir) / cache_key(spec)
        self.shards = self.dir / "shards"
        self.dim = int(spec.embedding_dim)
        self.shards.mkdir(parents=True, exist_ok=True)
        identity = self.dir / "identity.json"
        if not identity.is_file():
            _atomic_write_bytes(identity, (json.dumps(backbone_identity(spec), indent=2) + "\n").encode())
        self._index: dict[str, tuple[Path, int]] | None = None

    def index(self) -> dict[str, tuple[Path, int]]:
        """sha256 → (shard, row). Reads only the key arrays; unreadable shards are logged and ignored."""
        if self._index is None:
            self._index = {}
            for shard in sorted(self.shards.glob("*.npz")):
                try:
                    with np.load(shard) as z:
                        keys = z["keys"]
                except Exception as e:  # a damaged shard is recomputed, not fatal
                    log.warning("ignoring unreadable cache shard %s (%s)", shard, e)
                    continue
                for row, key in enumerate(keys.tolist()):
                    self._index.setdefault(key, (shard, row))
        return self._index

    def __contains__(self, key: str) -> bool:
        return key in self.index()

    def __len__(self) -> int:
        return len(self.index())

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"embedding batch has shape {vectors.shape}, expected ({len(keys)}, {self.dim})")
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:24] + ".npz"
        shard = self.shards / name
        fd, tmp = tempfile.mkstemp(dir=self.shards, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=np.asarray(keys, dtype="U64"), vectors=vectors)
            os.replace(tmp, shard)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        index = self.index()
        for row, key in enumerate(keys):
            index.setdefault(key, (shard, row))

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """[len(keys), dim] float32; every key must be present."""
        index = self.index()
        out = np.empty((len(keys), self.dim), np.float32)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            shard, row = index[key]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            with np.load(shard) as z:
                vectors = z["vectors"]
            dst, src = zip(*pairs, strict=True)
            out[list(dst)] = vectors[list(src)]
        return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_input(path: str | Path, spec: Any) -> np.ndarray:
    """One image file → the backbone inputs the cache embeds, [n_crops, H, W, 3].

    Decoded and prepared by the contract exactly as the service does an upload of the same bytes
    (`contract.decode` with `CORPUS_LIMITS`, which refuse no picture for its size that Pillow decodes, then
    `contract.recipe` as `spec.preprocessing` says); tests/contract/test_parity.py holds the two paths to
    identical arrays.
    """
    try:
        decoded = decode_file(path, CORPUS_LIMITS)
    except (ImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e} (drop unreadable images first: drop_unreadable)") from e
    return model_inputs(decoded.image, spec)


def _run_model(model: Any, x: np.ndarray) -> np.ndarray:
    y = model.predict_on_batch(x) if hasattr(model, "predict_on_batch") else model(x, training=False)
    if isinstance(y, dict | list | tuple):
        raise ValueError("the embedding model must have a single output")
    return np.asarray(y, dtype=np.float32)


def _batches(paths: Sequence[Path], spec: Any, batch_size: int, workers: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(start, pictures' inputs) with decoding of the next batch overlapped with the model on the current one."""
    starts = range(0, len(paths), batch_size)
    with ThreadPoolExecutor(max(1, workers)) as pool:

        def submit(start: int) -> list[Future[np.ndarray]]:
            return [pool.submit(load_input, p, spec) for p in paths[start : start + batch_size]]

        pending = submit(starts[0]) if starts else None
        for k, start in enumerate(starts):
            current = pending
            pending = submit(starts[k + 1]) if k + 1 < len(starts) else None
            yield start, [f.result() for f in current]  # type: ignore[union-attr]


def embed_manifest(
    manifest: Manifest,
    model: Any,
    spec: _Spec,
    cache_dir: str | Path,
    batch_size: int = 32,
    progress: bool = True,
    workers: int = 2,
) -> np.ndarray:
    """float32 [len(manifest), spec.embedding_dim], row i the embedding of manifest[i].

    `model` is a Keras model (or anything with `predict_on_batch`, or callable as `model(x, training=False)`)
    taking a batch of the crops `load_input(path, spec)` gives (the contract's decoding and recipe); each
    picture's outputs are combined as `contract.recipe.combine` says, the function the service uses. Only images
    whose content is not yet in the cache are run; the last batch is padded to `batch_size` pictures' worth of
    crops so the model sees one input shape. `workers` threads decode images ahead of the model.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be ≥ 1")
    cache = EmbeddingCache(cache_dir, spec)
    items = list(manifest)
    keys = [sha256_file(it.path) for it in items]
    todo: dict[str, Path] = {}
    for key, it in zip(keys, items, strict=True):
        if key not in cache and key not in todo:
            todo[key] = it.path
    if todo:
        log.info("embedding %d images (%d cached) into %s", len(todo), len(set(keys)) - len(todo), cache.dir)
        todo_keys, todo_paths = list(todo), list(todo.values())
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo_keys), desc=f"embedding ({spec.arch})", unit="img")
        try:
            for start, pictures in _batches(todo_paths, spec, batch_size, workers):
                n = len(pictures)
                x = np.concatenate(pictures)
                rows = len(x)
                full = batch_size * len(pictures[0])
                if rows < full:
                    x = np.concatenate([x, np.zeros((full - rows, *x.shape[1:]), x.dtype)])
                out = _run_model(model, x)[:rows]
                ends = np.cumsum([len(p) for p in pictures])[:-1]
                y = np.stack([combine(part, spec.recipe) for part in np.split(out, ends)])
                cache.put(todo_keys[start : start + n], y)
                if bar is not None:
                    bar.update(n)
        finally:
            if bar is not None:
                bar.close()
    return cache.get(keys)
