"""Data-parallel training over processes started by torchrun.

Embeddings are all-gathered with gradients so the loss sees the global batch; gradients are
then averaged explicitly after backward (rather than through ``DistributedDataParallel``),
because towers are called several times per step (per side and per GradCache chunk) and one
averaging after the last backward is both exact and what DDP's ``no_sync`` would do anyway.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .losses import PairEmbeddings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits among the training processes."""

    rank: int = 0  # global index of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # index on this machine (picks the GPU)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group torchrun describes in the environment (a no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    logger.info("process %d of %d joined the process group", env.rank, env.world_size)
    return env


def shutdown_distributed(env: DistEnv) -> None:
    """Leave the process group so the launcher sees a clean exit."""
    if env.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather rows of possibly different counts; backward sums every process's gradient.

    Each process's loss depends on every process's embeddings, so the gradient of this
    process's rows is the sum over processes of their losses' gradients: an all-reduce of the
    gathered gradient, then this process's slice.
    """

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, sizes: list[int], rank: int) -> Tensor:
        longest = max(sizes)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def process_sizes(count: int, env: DistEnv, device: torch.device) -> list[int]:
    """Every process's ``count`` (e.g. its number of rows), in rank order."""
    if not env.is_distributed:
        return [count]
    local = torch.tensor([count], device=device)
    counts = [torch.empty_like(local) for _ in range(env.world_size)]
    dist.all_gather(counts, local)
    return [int(c.item()) for c in counts]


def gather_with_grad(tensor: Tensor, env: DistEnv) -> tuple[Tensor, int]:
    """Every process's rows of ``tensor`` in rank order, and the row where this process's start.

    Gradients flow back to each process's own rows. Row counts may differ between processes
    (samples skipped as unreadable), the other dims may not.
    """
    if not env.is_distributed:
        return tensor, 0
    sizes = process_sizes(tensor.shape[0], env, tensor.device)
    return _GatherWithGrad.apply(tensor, sizes, env.rank), sum(sizes[: env.rank])


def gather_pairs(
    query: Tensor, positive: Tensor, negative: Tensor | None, env: DistEnv
) -> PairEmbeddings:
    """Bundle this process's embeddings with every process's, for a contrastive loss."""
    if not env.is_distributed:
        return PairEmbeddings.single(query, positive, negative)
    all_query, offset = gather_with_grad(query, env)
    all_positive, _ = gather_with_grad(positive, env)
    all_negative = None if negative is None else gather_with_grad(negative, env)[0]
    weight = query.shape[0] * env.world_size / max(all_query.shape[0], 1)
    return PairEmbeddings(query, positive, all_query, all_positive, all_negative, offset, weight)


def average_gradients(
    params: Iterable[nn.Parameter], env: DistEnv, bucket_mb: float = 25.0
) -> None:
    """Average ``.grad`` over processes in flat buckets (parameters with no grad are skipped).

    Every process runs the same graph, so the same parameters have gradients everywhere.
    """
    if not env.is_distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    limit = int(bucket_mb * 2**20)
    bucket: list[Tensor] = []
    for grad in grads:
        bucket.append(grad)
        if sum(g.numel() * g.element_size() for g in bucket) >= limit:
            _all_reduce_mean_(bucket, env)
            bucket = []
    if bucket:
        _all_reduce_mean_(bucket, env)


def _all_reduce_mean_(tensors: list[Tensor], env: DistEnv) -> None:
    """In-place mean over processes of tensors of one dtype and device, as one flat message."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat /= env.world_size
        for tensor, part in zip(group, flat.split([t.numel() for t in group]), strict=True):
            tensor.copy_(part.view_as(tensor))


def broadcast_state(module: nn.Module, env: DistEnv) -> None:
    """Copy rank 0's parameters and buffers to every process so they start identical."""
    if not env.is_distributed:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def mean_over_processes(
    values: dict[str, float], env: DistEnv, device: torch.device
) -> dict[str, float]:
    """The mean of each logged value over processes (for losses: the global-batch value)."""
    if not env.is_distributed or not values:
        return values
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    stacked /= env.world_size
    return dict(zip(values, stacked.tolist(), strict=True))


def min_over_processes(value: int, env: DistEnv, device: torch.device) -> int:
    """The smallest ``value`` of any process (e.g. to skip a step where one process has no rows)."""
    if not env.is_distributed:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def gather_objects(obj: Any, env: DistEnv, device: torch.device) -> list[Any]:
    """Every process's ``obj`` in rank order (small objects of tensors and plain types).

    Serialised with ``torch.save`` (loaded back with ``weights_only=True``) and sent as bytes,
    which also works for tensors inside ``obj``.
    """
    if not env.is_distributed:
        return [obj]
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8).to(device)
    sizes = process_sizes(data.numel(), env, device)
    parts = _GatherWithGrad.apply(data, sizes, env.rank).cpu().split(sizes)
    return [torch.load(io.BytesIO(part.numpy().tobytes()), weights_only=True) for part in parts]


def barrier(env: DistEnv) -> None:
    """Wait for every process (e.g. until rank 0 has written a checkpoint)."""
    if env.is_distributed:
        dist.barrier()


def sum_over_processes(values: list[int], env: DistEnv, device: torch.device) -> list[int]:
    """Element-wise sums over processes (e.g. the global batch size and skipped count)."""
    if not env.is_distributed:
        return list(values)
    tensor = torch.tensor(values, device=device)
    dist.all_reduce(tensor)
    return [int(v) for v in tensor.tolist()]
