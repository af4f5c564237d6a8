"""Uploads to embeddings, for whichever bundle a request holds: bytes → `contract.decode` (limits, EXIF, alpha;
in a worker thread, a bounded number at once) → the bundle's quality step → `contract.recipe` backbone inputs as
the bundle's card says → the micro-batcher → the bundle's backbone → one embedding per picture.

One `Embedder` (and one micro-batcher, one queue limit) per serving process, shared by every bundle: each item
queued carries the model of the bundle that submitted it, and a batch runs each model on its own items, so a
request's embedding always comes from its own bundle's model, even while a swap happens. `pictures` is the one
place uploads become `Picture`s (compare, verify, identify and enrolment): through the bundle's embedding cache
(service/serving/cache.py) first. Covered by tests/service/test_engine.py, tests/service/test_bundle.py and
tests/service/test_cache.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from contract.decode import Decoded, ImageError, ImageLimits, decode_bytes, digest
from contract.recipe import pool, resized
from service.config import Settings
from service.serving.batching import MicroBatcher
from service.serving.bundle import Bundle
from service.serving.cache import Key
from service.serving.model import Model
from service.serving.picture import Picture, Prepared

Item = tuple[Model, np.ndarray]  # a picture's backbone inputs, and the model that is to embed them


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        decode_pixels=settings.decode_pixels,
        formats=frozenset(settings.allowed_formats),
    )


def embed_items(items: list[Item]) -> list[np.ndarray]:
    """One micro-batch: each model runs its own items (all of one model but during a swap), in order; each
    picture's per-crop vectors [n_crops, embedding_dim] come back."""
    out: list[np.ndarray] = [np.zeros(0)] * len(items)
    by_model: dict[int, list[int]] = {}
    for i, (model, _) in enumerate(items):
        by_model.setdefault(id(model), []).append(i)
    for rows in by_model.values():
        model = items[rows[0]][0]
        for i, vectors in zip(rows, model.crop_vectors([items[i][1] for i in rows]), strict=True):
            out[i] = vectors
    return out


class Embedder:
    def __init__(self, settings: Settings, on_batch: Callable[[int, float], None] | None = None):
        self.limits = image_limits(settings)
        self.batcher: MicroBatcher[Item, np.ndarray] = MicroBatcher(
            embed_items,
            weight=lambda item: len(item[1]),  # a picture weighs its crops: `batch_max_size` counts backbone inputs
            max_batch=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=on_batch,
            name="embed",
        )
        # bounds the memory of concurrent decodes (at most `decode_pixels`, 40 MP, ~160 MB each in Pillow; larger
        # scans are reduced while decoding, contract.decode)
        self._decode_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def close(self) -> None:
        self.batcher.close()

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    # ---- bytes → backbone inputs (worker threads) ----------------------------------------------------------
    def decode(self, data: bytes, limits: ImageLimits | None = None) -> Decoded:
        with self._decode_slots:
            return decode_bytes(data, limits or self.limits)

    def decode_original(self, data: bytes) -> Decoded:
        """An enrolled original (a thumbnail's source, an archive's original on restore): it passed the upload
        checks once, so the byte limit is lifted, lest a later, smaller limit hide it; the others hold."""
        return self.decode(data, dataclasses.replace(self.limits, max_bytes=max(len(data), 1)))

    def prepare(self, bundle: Bundle, data: bytes, floor: bool = True, sha256: str | None = None) -> Prepared:
        """Bytes → decoded picture, backbone inputs and measured quality; with `floor`, a picture below the
        card's quality floor is refused (422 `image_quality_too_low`) before the backbone sees it. `sha256`: the
        bytes' digest when the caller has it (the cache's key), not computed again."""
        with self._decode_slots:
            decoded = decode_bytes(data, self.limits, sha256)
            # the recipe's resize, done once: quality is measured on it and the crops are cut from it
            working = resized(decoded.image, bundle.model.card.backbone.preprocessing)
            pq = bundle.quality.assess(decoded, working)
            if floor:
                bundle.quality.check_floor(pq)
            return Prepared(decoded, bundle.model.model_inputs(working), pq, working.size)

    # ---- backbone inputs → embeddings ----------------------------------------------------------------------
    async def crops(self, bundle: Bundle, inputs: np.ndarray) -> np.ndarray:
        """One picture's per-crop vectors by the bundle's model, batched with concurrent requests' pictures."""
        return await self.batcher.submit((bundle.model, inputs))

    async def embed(self, bundle: Bundle, inputs: np.ndarray) -> np.ndarray:
        """One picture's embedding by the bundle's model (the mean of its crops' vectors)."""
        return pool(await self.crops(bundle, inputs))

    async def picture(self, bundle: Bundle, prepared: Prepared) -> Picture:
        """A prepared upload through the backbone."""
        return Picture.of(prepared, await self.crops(bundle, prepared.inputs))

    async def pictures(
        self, bundle: Bundle, collection: str, uploads: Sequence[bytes], names: Sequence[str] | None = None
    ) -> list[Picture]:
        """Uploads of a request in `collection` → `Picture`s by the bundle's model, in the order given. An upload
        the bundle's cache holds for this collection, model, image limits and bytes (service/serving/cache.py)
        skips decoding, the quality step and the backbone; one that another upload is being embedded for under
        the same key right now (another request's, or this one's twice) waits for that embedding (single
        flight). The others are decoded and quality-checked (422 below the floor: nothing is cached), go to the
        backbone in a canonical order (by sha256, so compare(a, b) and compare(b, a) run the very same batch), and
        are cached. With `names` (an enrolment's file names), a refused upload's error names its file."""
        cache = bundle.cache
        keys: list[Key | None] = [None] * len(uploads)
        out: list[Picture | None] = [None] * len(uploads)
        if cache.enabled:

            def look_up(data: bytes) -> tuple[Key, Picture | None]:
                key = cache.key(collection, bundle.model_id, self.limits, digest(data))  # hashing: off the loop
                return key, cache.get(key)

            for i, (key, hit) in enumerate(await asyncio.gather(*(asyncio.to_thread(look_up, d) for d in uploads))):
                keys[i], out[i] = key, hit
        lead: list[int] = []  # embedded by this request
        led: dict[int, tuple[Key, asyncio.Future[Picture | None]]] = {}  # of those, the flights this request leads
        waits: dict[int, asyncio.Future[Picture | None]] = {}  # another upload's flight under the same key
        for i, (p, at) in enumerate(zip(out, keys, strict=True)):
            if p is not None:
                continue
            if at is None:  # the cache is off: no key, no flight
                lead.append(i)
                continue
            fut, leads = cache.flight(at)
            if leads:
                lead.append(i)
                led[i] = (at, fut)
            else:
                waits[i] = fut
        try:
            await self._embed(bundle, uploads, names, keys, lead, out)
        finally:  # landed with the picture, or None (refused, cancelled): a waiter then embeds on its own
            for i, (at, fut) in led.items():
                cache.land(at, fut, out[i])
        alone: list[int] = []
        for i, fut in waits.items():
            out[i] = await asyncio.shield(fut)
            if out[i] is None:
                alone.append(i)
        cache.stats.count(shared=len(waits) - len(alone))
        await self._embed(bundle, uploads, names, keys, alone, out)
        return [p for p in out if p is not None]

    async def _embed(
        self,
        bundle: Bundle,
        uploads: Sequence[bytes],
        names: Sequence[str] | None,
        keys: Sequence[Key | None],
        todo: Sequence[int],
        out: list[Picture | None],
    ) -> None:
        """Uploads `todo` decoded, quality-checked and embedded in the canonical order, each written to `out` as
        cached."""
        if not todo:
            return
        prepared = await asyncio.gather(
            *(self._prepare(bundle, uploads[i], None if names is None else names[i], keys[i]) for i in todo)
        )
        order = sorted(range(len(todo)), key=lambda j: prepared[j].sha256)
        done = await asyncio.gather(*(self.picture(bundle, prepared[j]) for j in order))
        for j, picture in zip(order, done, strict=True):
            at = keys[todo[j]]
            out[todo[j]] = picture if at is None else bundle.cache.put(at, picture)

    async def _prepare(self, bundle: Bundle, data: bytes, name: str | None, key: Key | None) -> Prepared:
        try:
            return await asyncio.to_thread(self.prepare, bundle, data, True, None if key is None else key.sha256)
        except ImageError as e:
            if name is None:
                raise
            # the same error, naming the file: one bad file refuses the whole enrolment
            raise e.about(name or "upload") from e

    def embed_many(self, bundle: Bundle, datas: Sequence[bytes]) -> list[np.ndarray | Exception]:
        """Enrolled originals → embeddings, synchronously (reindex): never refused for quality, and an original
        that no longer decodes under today's limits gives its error in its place."""
        out: list[np.ndarray | Exception] = []
        xs: list[np.ndarray] = []
        slots: list[int] = []
        for data in datas:
            try:
                xs.append(self.prepare(bundle, data, floor=False).inputs)
                slots.append(len(out))
                out.append(np.zeros(0))
            except ImageError as e:
                out.append(e)
        if xs:
            for slot, emb in zip(slots, bundle.model.embed_pictures(xs), strict=True):
                out[slot] = emb
        return out
