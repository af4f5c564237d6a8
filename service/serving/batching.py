"""Async micro-batching: concurrent requests share one backbone run.

Callers `await batcher.submit(item)`; one worker task takes the first waiting item, waits at most
`max_wait_ms` for up to `max_batch` items in all (or, with a `weight` function, items whose weights add up to
at most `max_batch`: the embedder weighs a picture by its crops, so one run packs the crops of concurrent
requests and never cuts a picture's crops apart; an item heavier than `max_batch` runs alone), runs
`fn(items)` in a worker thread (never on the event loop) and hands each caller its own result. A full queue
raises `Overloaded` (service/errors.py) at once instead of queueing without bound (the HTTP layer answers 503
with Retry-After). If a batch fails, its items are retried one by one so an exception reaches only the caller
whose item caused it.
Covered by tests/service/test_batching.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from service.errors import Overloaded

__all__ = ["MicroBatcher", "Overloaded"]

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class MicroBatcher(Generic[T, R]):
    """Batch single items through `fn(list[T]) -> Sequence[R]` (same length, same order).

    `on_batch(size, seconds)` is called after every run (for a histogram); `queue_depth` and the counters are
    plain attributes a Prometheus collector can read. The batcher binds to the running loop on `start()` (or
    on the first `submit`), and rebinds if a later call comes from another loop (tests, CLI `asyncio.run`s).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
        weight: Callable[[T], int] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be ≥ 1 and max_wait_ms ≥ 0")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.name = name
        self.weight: Callable[[T], int] = weight or (lambda _: 1)
        # one thread: batches are serialised by the single worker anyway, and the model parallelises inside
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R], int]] | None = None
        self._carry: tuple[T, asyncio.Future[R], int] | None = None  # taken from the queue, next batch's first
        self._queued_weight = 0
        self._head_weight = 0  # the item the worker holds while it waits for more
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._enough: asyncio.Event | None = None
        self._closed = False
        self.batches_run = 0
        self.items_run = 0
        self.recent_batch_sizes: deque[int] = deque(maxlen=1000)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.running and self._loop is loop:
            return
        self._loop = loop
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._carry = None
        self._queued_weight = 0
        self._enough = asyncio.Event()
        self._worker = loop.create_task(self._work(), name=f"{self.name}-worker")

    async def stop(self) -> None:
        """Stop the worker; callers still queued get `Overloaded` (they may retry on another instance)."""
        worker, queue = self._worker, self._queue
        self._worker = None
        if worker is not None and self._loop is asyncio.get_running_loop():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if queue is not None:
            waiting = [self._carry] if self._carry is not None else []
            self._carry = None
            while not queue.empty():
                waiting.append(queue.get_nowait())
            for _, fut, _w in waiting:
                if not fut.done():
                    fut.set_exception(Overloaded("the service is shutting down"))

    def close(self) -> None:
        """Release the inference thread; the batcher refuses work afterwards."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: T) -> R:
        if self._closed:
            raise Overloaded("the service is shutting down")
        if not self.running or self._loop is not asyncio.get_running_loop():
            await self.start()
        assert self._queue is not None and self._enough is not None and self._loop is not None
        fut: asyncio.Future[R] = self._loop.create_future()
        w = max(1, int(self.weight(item)))
        try:
            self._queue.put_nowait((item, fut, w))
        except asyncio.QueueFull:
            raise Overloaded(
                f"{self.max_queue} requests are already waiting for the model",
                retry_after=max(1.0, self.max_wait * 4),
            ) from None
        self._queued_weight += w
        if self._queued_weight + self._head_weight >= self.max_batch:
            self._enough.set()
        return await fut

    async def _work(self) -> None:
        assert self._queue is not None and self._enough is not None
        queue, enough = self._queue, self._enough
        loop = asyncio.get_running_loop()
        while True:
            if self._carry is not None:
                first, self._carry = self._carry, None
            else:
                first = await queue.get()
                self._queued_weight -= first[2]
            if first[2] + self._queued_weight < self.max_batch and self.max_wait > 0:
                enough.clear()
                self._head_weight = first[2]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(enough.wait(), self.max_wait)
                self._head_weight = 0
            batch, total = [first], first[2]
            while total < self.max_batch and not queue.empty():
                nxt = queue.get_nowait()
                self._queued_weight -= nxt[2]
                if total + nxt[2] > self.max_batch:
                    self._carry = nxt
                    break
                batch.append(nxt)
                total += nxt[2]
            # a caller that went away (client disconnect → task cancelled) costs no model time
            live = [(item, fut, w) for item, fut, w in batch if not fut.done()]
            if not live:
                continue
            size = sum(w for _, _, w in live)
            t0 = time.perf_counter()
            results = await self._run(loop, [item for item, _, _ in live])
            self.batches_run += 1
            self.items_run += len(live)
            self.recent_batch_sizes.append(size)
            if self.on_batch is not None:
                try:
                    self.on_batch(size, time.perf_counter() - t0)
                except Exception:  # a metrics hook must never stall inference
                    log.exception("%s: on_batch hook failed", self.name)
            for (_, fut, _w), res in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list[T]) -> list[R | BaseException]:
        try:
            out: list[R | BaseException] = list(await loop.run_in_executor(self._executor, self.fn, items))
            if len(out) != len(items):
                raise RuntimeError(f"{self.name}: fn returned {len(out)} results for {len(items)} items")
            return out
        except Exception as e:
            if len(items) == 1:
                return [e]
        # isolate the culprit: the other callers in the batch still get their results
        results: list[R | BaseException] = []
        for item in items:
            results.extend(await self._run(loop, [item]))
        return results
