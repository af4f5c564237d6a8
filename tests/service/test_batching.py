"""service/serving/batching.py: batched results equal one-by-one results, batches form, overload and errors behave."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from service.serving.batching import MicroBatcher, Overloaded
from service.serving.model import Model
from tests.service.conftest import painting

pytestmark = pytest.mark.anyio


async def test_real_model_batched_equals_one_by_one(model: Model) -> None:
    xs = [model.model_inputs(painting(s))[0] for s in range(12)]  # the test model's recipe is one crop
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


# ---- weighted batches (`weight=len`: the engine weighs a picture by its crops) ------------------------------
def _weighed(max_batch: int = 32, max_wait_ms: float = 200) -> tuple[MicroBatcher, list[list[int]], list[int]]:
    """A batcher of items [id] * weight; it records each call's item ids and the sizes `on_batch` saw."""
    calls: list[list[int]] = []
    sizes: list[int] = []

    def fn(items: list[list[int]]) -> list[tuple[int, int]]:
        calls.append([it[0] for it in items])
        return [(it[0], len(it)) for it in items]

    batcher: MicroBatcher = MicroBatcher(
        fn, max_batch=max_batch, max_wait_ms=max_wait_ms, weight=len, on_batch=lambda n, _s: sizes.append(n)
    )
    return batcher, calls, sizes


async def _all(*calls: Any) -> list[Any]:
    """The callers' results, or a failure within seconds if some caller is never answered."""
    return list(await asyncio.wait_for(asyncio.gather(*calls), 10))


async def test_two_items_that_fill_the_batch_run_in_one_call() -> None:
    batcher, calls, sizes = _weighed(max_wait_ms=2000)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = await _all(batcher.submit([1] * 16), batcher.submit([2] * 16))
    assert loop.time() - t0 < 1.5, "a full batch does not wait out max_wait"
    assert out == [(1, 16), (2, 16)]
    assert calls == [[1, 2]]
    assert list(batcher.recent_batch_sizes) == [32] and sizes == [32]
    assert batcher.items_run == 2 and batcher.batches_run == 1
    await batcher.stop()


async def test_three_items_of_sixteen_take_two_calls() -> None:
    batcher, calls, _ = _weighed()
    out = await _all(*(batcher.submit([i] * 16) for i in (1, 2, 3)))
    assert out == [(1, 16), (2, 16), (3, 16)]
    assert calls == [[1, 2], [3]]
    assert list(batcher.recent_batch_sizes) == [32, 16]
    await batcher.stop()


async def test_an_item_that_does_not_fit_is_carried_to_the_next_batch() -> None:
    batcher, calls, sizes = _weighed()
    # 16 + 10 fit; 16 more would make 42 > 32, so item 3 starts the next batch, which item 4 then fills
    weights = {1: 16, 2: 10, 3: 16, 4: 16}
    out = await _all(*(batcher.submit([i] * w) for i, w in weights.items()))
    assert out == list(weights.items())
    assert calls == [[1, 2], [3, 4]]
    assert list(batcher.recent_batch_sizes) == [26, 32] and sizes == [26, 32]
    assert batcher.items_run == 4 and batcher.batches_run == 2
    await batcher.stop()


async def test_a_carried_item_alone_still_runs() -> None:
    batcher, calls, _ = _weighed(max_wait_ms=20)
    out = await _all(batcher.submit([1] * 20), batcher.submit([2] * 20))
    assert out == [(1, 20), (2, 20)]
    assert calls == [[1], [2]]
    assert list(batcher.recent_batch_sizes) == [20, 20]
    await batcher.stop()


@pytest.mark.parametrize("order", [(40, 16), (16, 40), (40, 40)])
async def test_an_item_heavier_than_max_batch_runs_alone(order: tuple[int, int]) -> None:
    batcher, calls, _ = _weighed(max_wait_ms=20)
    out = await _all(*(batcher.submit([i] * w) for i, w in enumerate(order, 1)))
    assert out == [(1, order[0]), (2, order[1])]
    assert calls == [[1], [2]]
    assert list(batcher.recent_batch_sizes) == list(order)
    await batcher.stop()


async def test_weighted_results_go_to_the_right_callers() -> None:
    batcher, calls, _ = _weighed(max_batch=32, max_wait_ms=10)
    rng = np.random.default_rng(3)
    weights = [int(w) for w in rng.integers(1, 40, 60)]
    out = await _all(*(batcher.submit([i] * w) for i, w in enumerate(weights)))
    assert out == list(enumerate(weights))
    assert sorted(i for call in calls for i in call) == list(range(60))
    for call, size in zip(calls, batcher.recent_batch_sizes, strict=True):
        assert size == sum(weights[i] for i in call)
        assert size <= 32 or len(call) == 1, "only a lone item may exceed max_batch"
    # items keep their order across batches (a carried item is the next batch's first)
    assert [i for call in calls for i in call] == list(range(60))
    await batcher.stop()


async def test_a_weightless_item_counts_as_one() -> None:
    calls: list[int] = []

    def fn(items: list[str]) -> list[str]:
        calls.append(len(items))
        return [it.upper() for it in items]

    batcher = MicroBatcher(fn, max_batch=2, max_wait_ms=200, weight=len)
    out = await _all(batcher.submit(""), batcher.submit("x"))
    assert out == ["", "X"]
    assert list(batcher.recent_batch_sizes) == [2] and calls == [2]
    await batcher.stop()
