"""``serve.batcher``: concurrent requests coalesce by key, each gets its own results back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mmembed.serve.batcher import Batcher


class Recorder:
    """A batch function that squares numbers, fails on negative ones and records its calls."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[tuple[list, object]] = []
        self.delay = delay

    def __call__(self, items: list, key: object) -> list:
        self.calls.append((list(items), key))
        time.sleep(self.delay)
        return [ValueError(f"bad {x}") if x < 0 else (x * x, key) for x in items]


def test_concurrent_requests_share_calls_and_get_their_own_rows_in_order():
    recorder = Recorder(delay=0.02)
    batcher = Batcher(recorder, max_batch=64, max_wait_s=0.05)
    requests = [list(range(10 * n, 10 * n + 1 + n % 3)) for n in range(32)]
    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda items: batcher.run(items, "k"), requests))
    finally:
        batcher.close()
    for items, got in zip(requests, results, strict=True):
        assert got == [(x * x, "k") for x in items]
    assert len(recorder.calls) < len(requests) / 2  # coalesced
    assert max(len(items) for items, _ in recorder.calls) <= 64
    assert sorted(x for items, _ in recorder.calls for x in items) == sorted(
        x for items in requests for x in items
    )


def test_a_batch_holds_one_key_and_closes_at_max_batch():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=4, max_wait_s=0.5)
    try:
        first = batcher.submit([0], "x")  # waits 0.5 s for more "x" while the others queue
        time.sleep(0.05)
        futures = [batcher.submit([n], "a" if n % 2 else "b") for n in range(1, 11)]
        results = [future.result(timeout=10) for future in futures]
        assert first.result(timeout=10) == [(0, "x")]
    finally:
        batcher.close()
    assert results == [[(n * n, "a" if n % 2 else "b")] for n in range(1, 11)]
    for items, key in recorder.calls:
        assert len(items) <= 4 and all((x % 2 == 1) == (key == "a") for x in items if x)
    assert [len(items) for items, _ in recorder.calls[1:]] == [4, 4, 1, 1]


def test_a_failed_item_fails_only_its_own_request():
    batcher = Batcher(Recorder(), max_batch=16, max_wait_s=0.05)
    try:
        with ThreadPoolExecutor(4) as pool:
            good = pool.submit(batcher.run, [1, 2])
            bad = pool.submit(batcher.run, [3, -4, 5])
            also_good = pool.submit(batcher.run, [6])
            assert good.result() == [(1, None), (4, None)]
            assert also_good.result() == [(36, None)]
            got = bad.result()
    finally:
        batcher.close()
    assert got[0] == (9, None) and isinstance(got[1], ValueError) and got[2] == (25, None)


def test_an_exception_of_the_whole_batch_reaches_its_requests_and_the_worker_goes_on():
    calls = []

    def flaky(items, key):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("the model fell over")
        return items

    batcher = Batcher(flaky, max_batch=8, max_wait_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="fell over"):
            batcher.run([1, 2])
        assert batcher.run([3]) == [3]
        assert batcher.run([]) == []
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit([1])


def test_max_batch_one_runs_every_request_alone():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=1, max_wait_s=0.05)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: batcher.run([n]), range(16)))
    finally:
        batcher.close()
    assert len(recorder.calls) == 16 and all(len(items) == 1 for items, _ in recorder.calls)


def test_an_exception_in_a_shared_batch_fails_only_the_request_that_caused_it():
    def picky(items, key):
        if "boom" in items:
            raise TypeError("cannot handle boom")
        return [item.upper() for item in items]

    batcher = Batcher(picky, max_batch=16, max_wait_s=0.2)
    try:
        futures = [batcher.submit(items) for items in (["a"], ["b", "boom"], ["c", "d"])]
        assert futures[0].result(timeout=10) == ["A"]
        with pytest.raises(TypeError, match="boom"):
            futures[1].result(timeout=10)
        assert futures[2].result(timeout=10) == ["C", "D"]
    finally:
        batcher.close()
    assert list(batcher.batch_sizes)[0] == 5  # they did share a first call
