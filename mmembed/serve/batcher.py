"""Dynamic batching: requests that arrive together share one call of a batch function.

One worker thread owns the batch function (and so the model behind it): handlers submit a list
of items with a key and wait on a future. A batch holds requests of one key, in arrival order;
it closes when it reaches ``max_batch`` items or ``max_wait_s`` after its first request came.
A request is never split, so a request larger than ``max_batch`` forms a batch of its own.
The batch function returns one result per item (a value, or an exception for a failed item);
each request gets back its own slice, in its order. Should the function raise, the batch's
requests are run again one by one, so one request's exception never fails another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# items, key -> one result per item; an exception in the list fails only that item's request
BatchFunction = Callable[[list[Any], Hashable], Sequence[Any]]
_FULL = object()  # the next request of the batch's key does not fit


@dataclass
class _Request:
    items: list[Any]
    key: Hashable
    future: Future = field(default_factory=Future)


class Batcher:
    """Coalesces concurrent ``submit`` calls into calls of ``function``.

    Args:
        function: embeds a list of items for one key; called only from the worker thread.
        max_batch: items at which a batch closes (1 turns batching off).
        max_wait_s: how long a batch waits for more requests after its first one arrived.
        name: the worker thread's name.
    """

    def __init__(
        self, function: BatchFunction, max_batch: int, max_wait_s: float, name: str = "batcher"
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.function, self.max_batch, self.max_wait_s = function, max_batch, max_wait_s
        self._pending: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._closed = False
        # items per call of ``function``, latest last (for tests and statistics)
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: list[Any], key: Hashable = None) -> Future:
        """A future of the items' results, in order (a list, one entry per item)."""
        request = _Request(list(items), key)
        if not request.items:
            request.future.set_result([])
            return request.future
        with self._ready:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(request)
            self._ready.notify()
        return request.future

    def run(self, items: list[Any], key: Hashable = None) -> list[Any]:
        """``submit`` and wait: for callers on a thread of their own."""
        return self.submit(items, key).result()

    def close(self) -> None:
        """Finish the requests already submitted, then stop the worker."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a first request, then gather same-key requests until the batch closes."""
        with self._ready:
            while not self._pending:
                if self._closed:
                    return None
                self._ready.wait()
            first = self._pending.popleft()
            batch, size = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                taken = self._take(first.key, self.max_batch - size)
                if taken is _FULL:
                    break
                if taken is not None:
                    batch.append(taken)
                    size += len(taken.items)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._ready.wait(left)
            return batch

    def _take(self, key: Hashable, room: int) -> _Request | object | None:
        """The oldest pending request of ``key`` if it fits in ``room`` items, else ``_FULL``;
        None when there is none (lock held)."""
        for request in self._pending:
            if request.key == key:
                if len(request.items) > room:
                    return _FULL  # it leads the next batch: keep arrival order
                self._pending.remove(request)
                return request
        return None

    def _run(self, batch: list[_Request]) -> None:
        """One call for the batch; if it raises, each request is run alone, so the exception
        reaches only the request that caused it."""
        try:
            results = self._call(
                [item for request in batch for item in request.items], batch[0].key
            )
        except BaseException as error:  # the worker must outlive any batch: hand it on
            if len(batch) > 1:
                for request in batch:
                    self._run([request])
                return
            logger.exception("a request of %d items failed", len(batch[0].items))
            batch[0].future.set_exception(error)
            return
        start = 0
        for request in batch:
            request.future.set_result(results[start : start + len(request.items)])
            start += len(request.items)

    def _call(self, items: list[Any], key: Hashable) -> list[Any]:
        self.batch_sizes.append(len(items))
        results = list(self.function(items, key))
        if len(results) != len(items):
            raise RuntimeError(f"batch function gave {len(results)} results for {len(items)}")
        return results
