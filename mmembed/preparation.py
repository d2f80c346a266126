"""Prepare items in worker processes, in input order: decoding and preprocessing off the GIL.

``encode`` and the index's local engine both need the same thing: many items decoded and
preprocessed on the CPU while the model embeds the previous batch. Threads cannot do it (PIL
and torchvision's PIL transforms hold the GIL for most of their work: 16 threads prepared
717 images/s on an H200 host where 16 processes decoded 13,695), so chunks of items are
prepared by worker processes of a ``torch.utils.data.DataLoader``:

- workers are forked, so the model's preprocessing callables need no pickling, and they
  start once per call, not per chunk;
- every tensor of a chunk's result travels in one shared-memory buffer per dtype (``pack``),
  not one shared-memory file per tensor, and lands on the target device in one copy;
- results come back in chunk order; a worker that dies (killed, out of memory) ends the call
  with ``WorkerError`` naming the chunk, never a hang (the DataLoader checks its workers).

Where ``fork`` is unavailable (macOS, Windows) preparation runs inline.
"""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 16  # more rarely helps one GPU; set num_workers to go past it
CHUNKS_PER_WORKER = 4  # chunks a call is cut into per worker, so every worker gets work
# Fewer items are prepared inline: starting worker processes (a fork each, 0.1-0.4 s for two
# on the 2-core box) costs more than decoding a few dozen photos.
MIN_ITEMS_FOR_WORKERS = 64


class WorkerError(RuntimeError):
    """A worker process died while preparing a chunk of items."""


def default_workers() -> int:
    """Worker processes when the caller does not say: the usable CPUs, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def resolve_workers(num_workers: int | None) -> int:
    """``None`` -> ``default_workers()``; 0 prepares inline; negative is refused."""
    if num_workers is None:
        return default_workers()
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 (0 prepares inline), got {num_workers}")
    return num_workers


def chunk_size(count: int, batch_size: int, num_workers: int) -> int:
    """Items per prepared chunk: a batch, or a divisor of it so that every worker has chunks.

    A divisor, so that whole chunks add up to the batches an inline run makes: the towers
    then see the same batches, and the vectors do not depend on the worker count.
    """
    if num_workers == 0:
        return batch_size
    size = max(1, min(batch_size, math.ceil(count / (num_workers * CHUNKS_PER_WORKER))))
    while batch_size % size:
        size -= 1
    return size


@dataclass
class Packed:
    """A chunk's results pickled, with its tensors moved into one flat buffer per dtype."""

    pickled: bytes
    buffers: dict[torch.dtype, torch.Tensor]  # flat, one per dtype
    specs: list[tuple[torch.dtype, int, tuple[int, ...]]]  # (dtype, offset, shape) per tensor

    def unpack(self, device: torch.device | str | None = None) -> Any:
        """The results, their tensors views of the buffers (moved to ``device`` in one copy)."""
        buffers = self.buffers
        if device is not None:
            buffers = {k: v.to(device, non_blocking=True) for k, v in buffers.items()}
        return _Unpacker(io.BytesIO(self.pickled), buffers, self.specs).load()


class _Packer(pickle.Pickler):
    def __init__(self, file: io.BytesIO):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tensors: list[torch.Tensor] = []

    def persistent_id(self, obj: Any) -> int | None:
        if (
            isinstance(obj, torch.Tensor)
            and obj.device.type == "cpu"
            and obj.layout == torch.strided
            and not obj.requires_grad
        ):
            self.tensors.append(obj)
            return len(self.tensors) - 1
        return None


class _Unpacker(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, buffers: dict, specs: list):
        super().__init__(file)
        self.buffers, self.specs = buffers, specs

    def persistent_load(self, pid: int) -> torch.Tensor:
        dtype, offset, shape = self.specs[pid]
        return self.buffers[dtype][offset : offset + math.prod(shape)].view(shape)


def pack(value: Any) -> Packed:
    """``value`` pickled, every CPU tensor inside it copied into one buffer per dtype."""
    file = io.BytesIO()
    packer = _Packer(file)
    packer.dump(value)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    specs = []
    for tensor in packer.tensors:
        group = by_dtype.setdefault(tensor.dtype, [])
        offset = sum(t.numel() for t in group)
        specs.append((tensor.dtype, offset, tuple(tensor.shape)))
        group.append(tensor.reshape(-1))
    buffers = {dtype: torch.cat(group) for dtype, group in by_dtype.items()}
    return Packed(file.getvalue(), buffers, specs)


class Ready:
    """A chunk prepared inline: the same ``unpack`` as ``Packed``."""

    def __init__(self, results: list):
        self.results = results

    def unpack(self, device: torch.device | str | None = None) -> list:
        if device is None or torch.device(device).type == "cpu":
            return self.results
        return pack(self.results).unpack(device)  # one copy to the device, as from a worker


class _Chunks(torch.utils.data.Dataset):
    """Chunk ``number`` -> its packed results; each worker notes the chunk it is on."""

    def __init__(self, chunks: Sequence[Sequence[int]], prepare: Callable[[int], Any], slots):
        self.chunks, self.prepare = chunks, prepare
        self.slots = slots  # shared (pid, chunk) per worker: who was on what if one dies

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, number: int) -> Packed:
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            self.slots[2 * worker.id : 2 * worker.id + 2] = [os.getpid(), number]
        return pack([self.prepare(index) for index in self.chunks[number]])


def _as_is(value: Any) -> Any:
    return value


def prepared_chunks(
    chunks: Sequence[Sequence[int]], prepare: Callable[[int], Any], num_workers: int
) -> Iterator[tuple[Sequence[int], Packed | Ready]]:
    """``(chunk, prepared)`` for each chunk of item indices, in order.

    ``prepare(index)`` runs in a worker process (or inline with ``num_workers=0``, for fewer
    than ``MIN_ITEMS_FOR_WORKERS`` items, or without ``fork``) and returns a picklable result;
    a bad item should come back as a value (an ``InputError``), since an exception ends the
    whole call.
    ``prepared.unpack(device)`` gives the chunk's results.
    """
    workers = min(num_workers, len(chunks))
    few = sum(len(chunk) for chunk in chunks) < MIN_ITEMS_FOR_WORKERS
    if (
        workers == 0
        or few
        or len(chunks) < 2
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        for chunk in chunks:
            yield chunk, Ready([prepare(index) for index in chunk])
        return
    slots = multiprocessing.get_context("fork").Array("q", [-1] * 2 * workers, lock=False)
    loader = torch.utils.data.DataLoader(
        _Chunks(chunks, prepare, slots),
        batch_size=None,  # each dataset item is already a chunk
        num_workers=workers,
        collate_fn=_as_is,
        multiprocessing_context="fork",
    )
    results = iter(loader)
    for number, chunk in enumerate(chunks):
        try:
            prepared = next(results)
        except RuntimeError as error:
            if "DataLoader worker" not in str(error):
                raise
            lost = _lost_chunk(str(error), slots, default=number)
            raise WorkerError(
                f"a worker process died preparing items {_span(chunks[lost])} "
                f"(chunk {lost + 1} of {len(chunks)}): {str(error).splitlines()[0]}"
            ) from None
        yield chunk, prepared


def _lost_chunk(message: str, slots, default: int) -> int:
    """The chunk the dead worker was on: its pid (in the DataLoader's message) in ``slots``."""
    dead = {int(pid) for pid in re.findall(r"\d+", message.partition("pid(s)")[2][:200])}
    for slot in range(0, len(slots), 2):
        if slots[slot] in dead and slots[slot + 1] >= 0:
            return int(slots[slot + 1])
    return default


def _span(chunk: Sequence[int]) -> str:
    indices = sorted(chunk)
    shown = ", ".join(str(i) for i in indices[:8])
    return shown + (f", ... ({len(indices)} items)" if len(indices) > 8 else "")
