"""service/batching.py: batched results equal one-by-one results, batches form, overload and errors behave."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import MicroBatcher, Overloaded
from service.model import Model
from tests.service.conftest import painting

pytestmark = pytest.mark.anyio


async def test_real_model_batched_equals_one_by_one(model: Model) -> None:
    xs = [model.preprocess(painting(s)) for s in range(12)]
    sizes: list[int] = []
    batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
        lambda items: list(model.embed(np.stack(items))),
        max_batch=8,
        max_wait_ms=50,
        on_batch=lambda n, _s: sizes.append(n),
    )
    await batcher.start()
    try:
        batched = await asyncio.gather(*(batcher.submit(x) for x in xs))
    finally:
        await batcher.stop()
        batcher.close()
    alone = [model.embed(x[None])[0] for x in xs]
    for b, a in zip(batched, alone, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert sum(sizes) == 12 and max(sizes) > 1 and max(sizes) <= 8
    assert batcher.items_run == 12 and batcher.batches_run == len(sizes)


async def test_results_go_to_the_right_callers() -> None:
    seen_threads: set[str] = set()

    def fn(items: list[int]) -> list[int]:
        seen_threads.add(threading.current_thread().name)
        return [i * i for i in items]

    batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=20)
    out = await asyncio.gather(*(batcher.submit(i) for i in range(30)))
    assert out == [i * i for i in range(30)]
    assert max(batcher.recent_batch_sizes) == 4
    assert threading.main_thread().name not in seen_threads  # off the event loop's thread
    await batcher.stop()


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(lambda items: items, max_batch=64, max_wait_ms=30)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await batcher.submit("x") == "x"
    assert loop.time() - t0 < 1.0
    assert list(batcher.recent_batch_sizes) == [1]
    await batcher.stop()


async def test_exception_reaches_only_its_caller() -> None:
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 13 in items:
            raise ValueError("unlucky")
        return [-i for i in items]

    batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in (11, 12, 13, 14)), return_exceptions=True)
    assert results[0] == -11 and results[1] == -12 and results[3] == -14
    assert isinstance(results[2], ValueError)
    assert calls[0] == [11, 12, 13, 14]  # tried as one batch first, then isolated
    await batcher.stop()


async def test_overloaded_when_the_queue_is_full() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    batcher = MicroBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.05)  # the worker now holds item 0 inside `slow`
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    assert batcher.queue_depth == 2
    with pytest.raises(Overloaded) as e:
        await batcher.submit(3)
    assert e.value.retry_after >= 1
    release.set()
    assert await first == 0 and [await q for q in queued] == [1, 2]
    await batcher.stop()


async def test_stop_fails_waiting_callers_with_overloaded() -> None:
    release = threading.Event()
    batcher = MicroBatcher(lambda items: (release.wait(5), items)[1], max_batch=1, max_wait_ms=0)
    running = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(batcher.submit("b"))
    await asyncio.sleep(0)
    await batcher.stop()
    release.set()
    with pytest.raises(Overloaded):
        await waiting
    running.cancel()
    batcher.close()


async def test_cancelled_callers_cost_no_work() -> None:
    done: list[int] = []

    def fn(items: list[int]) -> list[int]:
        done.extend(items)
        return items

    batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=300)  # ample time to cancel before the batch runs
    keep = asyncio.ensure_future(batcher.submit(1))
    gone = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await keep == 1
    assert done == [1]
    await batcher.stop()


async def test_config_and_bad_config() -> None:
    b = MicroBatcher(lambda items: items, max_batch=3, max_wait_ms=1, max_queue=9)
    assert (b.max_batch, b.max_queue) == (3, 9)
    assert await b.submit(5) == 5
    await b.stop()
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=0)


def test_restarts_on_a_new_loop() -> None:
    # the CLI and tests may run several asyncio.run()s over one engine
    batcher = MicroBatcher(lambda items: [i + 1 for i in items], max_batch=4, max_wait_ms=1)
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 3
    batcher.close()
    with pytest.raises(Overloaded):
        asyncio.run(batcher.submit(3))
