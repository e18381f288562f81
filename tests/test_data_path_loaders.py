"""The data path's shortcuts: what is already known is answered without a batch, a future or a Task.

GatedLoader answers primed values and what the cache's local layer holds at once; lists started
before the first await still join one batch; Cache's single-flight waits once per fetch, not per
key. No database: the batch functions here count their calls.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from bff.cache import Cache
from bff.cache_local import LocalLayer
from resolvers.loaders import FetchGate, GatedLoader
from tests.test_cache import COUNTS, local_cache


class Batches:
    """A batch function: value = key * 10, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def load(self, keys: list[int]) -> list[int]:
        self.calls.append(keys)
        return [k * 10 for k in keys]


async def fill(cache: Cache, values: dict[int, int]) -> None:
    async def source(keys: list[int]) -> dict[int, int]:
        return {k: values[k] for k in keys}

    await cache.get_many(COUNTS, list(values), source)


async def test_a_list_the_local_layer_holds_is_answered_without_a_batch_or_a_future() -> None:
    cache = local_cache()
    await fill(cache, {1: 11, 2: 22})
    batches = Batches()
    loader = GatedLoader(FetchGate(), batches.load, partial(cache.held, COUNTS))
    pending = loader.load_all([2, 1, 2])
    assert not isinstance(pending, asyncio.Future)
    assert await pending == [22, 11, 22]
    assert batches.calls == []
    assert not loader._cache  # nothing stored per request: the local layer stays the source


async def test_lists_started_before_the_first_await_share_one_batch() -> None:
    cache = local_cache()
    await fill(cache, {1: 11})
    batches = Batches()
    loader = GatedLoader(FetchGate(), batches.load, partial(cache.held, COUNTS))
    first = loader.load_all([1, 2, 3])  # 1 is held, 2 and 3 are enqueued now
    second = loader.load_all([3, 4])
    assert await second == [30, 40]
    assert await first == [11, 20, 30]
    assert batches.calls == [[2, 3, 4]]


async def test_the_gate_holds_enqueued_lists_until_the_list_statements_end() -> None:
    gate = FetchGate()
    batches = Batches()
    loader = GatedLoader(gate, batches.load)
    with gate.list_fetch():
        first = loader.load_all([1])
        async with gate.list_fetch():
            await asyncio.sleep(0.01)  # a statement in flight: nothing is dispatched
            second = loader.load_all([2])
        assert batches.calls == []
    assert await first == [10]
    assert await second == [20]
    assert batches.calls == [[1, 2]]


async def test_primed_values_are_answered_without_a_batch_until_cleared() -> None:
    batches = Batches()
    loader = GatedLoader(FetchGate(), batches.load)
    loader.prime(1, 7).prime(2, 8)
    loader.prime(1, 9)  # as DataLoader.prime: a key already primed keeps its value
    assert await loader.load_all([1, 2]) == [7, 8]
    assert await loader.load(2) == 8
    loader.clear(1)
    assert await loader.load_all([1, 2]) == [10, 8]
    assert batches.calls == [[1]]


async def test_a_primed_key_already_loaded_keeps_the_loaded_value() -> None:
    batches = Batches()
    loader = GatedLoader(FetchGate(), batches.load)
    assert await loader.load(3) == 30
    loader.prime(3, 99)
    assert await loader.load(3) == 30
    assert await loader.load_all([3]) == [30]
    assert batches.calls == [[3]]


async def test_a_single_load_of_a_held_key_is_settled_at_once_and_kept_for_the_request() -> None:
    cache = local_cache()
    await fill(cache, {5: 55})
    batches = Batches()
    loader = GatedLoader(FetchGate(), batches.load, partial(cache.held, COUNTS))
    future = loader.load(5)
    assert future.done() and future.result() == 55
    await cache.invalidate(COUNTS, [5])
    assert loader.load(5) is future  # the request keeps what it read, as after a batch
    assert await loader.load(6) == 60
    assert batches.calls == [[6]]


async def test_a_reader_waits_once_for_someone_elses_fetch_and_fetches_the_rest_itself() -> None:
    cache = local_cache()
    release = asyncio.Event()
    calls: list[list[int]] = []

    async def source(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        await release.wait()
        return {k: k + 100 for k in keys}

    first = asyncio.create_task(cache.get_many(COUNTS, [1, 2, 3], source))
    while not calls:
        await asyncio.sleep(0)
    fetches = {id(f) for f in cache._inflight.values()}
    assert len(fetches) == 1  # one future for the whole batch, not one per key
    second = asyncio.create_task(cache.get_many(COUNTS, [2, 3, 4], source))
    await asyncio.sleep(0.01)
    release.set()
    assert await first == {1: 101, 2: 102, 3: 103}
    assert await second == {2: 102, 3: 103, 4: 104}
    assert calls == [[1, 2, 3], [4]]
    assert cache._inflight == {}


async def test_waiters_of_a_failed_fetch_read_their_keys_together_and_store_nothing() -> None:
    cache = local_cache()
    gate = asyncio.Event()

    async def failing(keys: list[int]) -> dict[int, int]:
        await gate.wait()
        raise RuntimeError("database down")

    calls: list[list[int]] = []

    async def source(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        return {k: k for k in keys}

    first = asyncio.create_task(cache.get_many(COUNTS, [1, 2], failing))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_many(COUNTS, [1, 2], source))
    await asyncio.sleep(0)
    gate.set()
    assert await second == {1: 1, 2: 2}
    try:
        await first
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the failed fetch should fail its reader")
    assert calls == [[1, 2]]
    assert cache.held(COUNTS, [1, 2]) == {}  # a waiter's own read is not stored


def test_local_get_many_drops_expired_entries_and_refreshes_hits() -> None:
    layer = LocalLayer(3, 60)
    for key in (1, 2, 3):
        layer.set(("n", key), key * 10, -1.0)
    assert layer.get_many("n", [1, 4]) == {1: 10}  # 1 is now the most recently used
    layer.set(("n", 4), 40, -1.0)  # evicts 2, the least recently used
    assert layer.get_many("n", [1, 2, 3, 4]) == {1: 10, 3: 30, 4: 40}
    expired = LocalLayer(10, 0)
    expired.set(("n", 1), 10, -1.0)
    assert expired.get_many("n", [1]) == {}
    assert len(expired) == 0


def test_local_entries_expire_between_80_and_100_percent_of_the_ttl() -> None:
    layer = LocalLayer(1_000, 10)
    started = time.monotonic()
    for key in range(500):
        layer.set(("n", key), key, started)
    expiries = [entry[0] - started for entry in layer._entries.values()]
    assert all(8.0 <= e <= 10.0 + 0.5 for e in expiries)
    assert max(expiries) - min(expiries) > 1.0  # spread, not all at once


async def test_a_gated_loader_holds_what_dataloader_init_would_set() -> None:
    """GatedLoader skips DataLoader.__init__ (its inspect checks): the state must be the same,
    so aiodataloader's own methods (load, load_many, dispatch) find what they expect."""
    from aiodataloader import DataLoader

    batches = Batches()
    gated = GatedLoader(FetchGate(), batches.load)
    plain: DataLoader[int, int] = DataLoader(batch_load_fn=batches.load, loop=asyncio.get_running_loop())
    inherited = {
        "loop",
        "batch_load_fn",
        "get_cache_key",
        "_cache",
        "_queue",
        "batch",
        "max_batch_size",
        "cache",
    }
    for name in inherited:
        mine, theirs = getattr(gated, name), getattr(plain, name)
        if callable(theirs) and name == "get_cache_key":
            assert mine(7) == theirs(7) == 7
        else:
            assert mine == theirs, name
    assert set(vars(plain)) <= set(vars(gated)) | {"get_cache_key"}
    # and it batches through aiodataloader's own path
    assert await asyncio.gather(gated.load(1), gated.load(2)) == [10, 20]
    assert batches.calls == [[1, 2]]
