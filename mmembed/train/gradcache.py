"""One contrastive backward pass, optionally with gradient caching (Gao et al. 2021).

GradCache makes the contrastive pool (the batch) independent of memory: embed the batch in
chunks without a graph, compute the loss on all embeddings and keep its gradient with
respect to each embedding, then re-embed each chunk with a graph and backpropagate the
cached gradient into the tower. The RNG state of each chunk is recorded in the first pass and
replayed in the second, so dropout masks match and the gradients equal the full-batch ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .losses import total_loss

LossFn = Callable[[dict[str, Tensor]], dict[str, Tensor]]


def first_tensor(inputs: Any) -> Tensor:
    """The first tensor in tower inputs (a tensor, or dicts/lists/tuples of them)."""
    if isinstance(inputs, Tensor):
        return inputs
    if isinstance(inputs, Mapping):
        inputs = list(inputs.values())
    for value in inputs if isinstance(inputs, list | tuple) else ():
        with contextlib.suppress(TypeError):
            return first_tensor(value)
    raise TypeError(f"no tensor in tower inputs of type {type(inputs).__name__}")


def batch_size_of(inputs: Any) -> int:
    """Number of items in tower inputs: the first dim of their first tensor."""
    return first_tensor(inputs).shape[0]


def split_inputs(inputs: Any, chunk_size: int) -> list[Any]:
    """Split tower inputs into chunks of ``chunk_size`` items.

    Tensors are split along dim 0; dicts, lists and tuples are split leaf by leaf; other leaves
    (None, strings, flags) are shared by every chunk.
    """
    count = -(-batch_size_of(inputs) // chunk_size)
    return [_chunk(inputs, i * chunk_size, (i + 1) * chunk_size) for i in range(count)]


def _chunk(inputs: Any, start: int, stop: int) -> Any:
    if isinstance(inputs, Tensor):
        return inputs[start:stop]
    if isinstance(inputs, Mapping):
        return {key: _chunk(value, start, stop) for key, value in inputs.items()}
    if isinstance(inputs, list | tuple):
        return type(inputs)(_chunk(value, start, stop) for value in inputs)
    return inputs


class RngState:
    """The CPU and current-GPU RNG states at one moment, to replay a forward identically."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.gpu = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run a block from the recorded state, then give back the RNG state as it was."""
        devices = [self.device] if self.gpu is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.gpu is not None:
                torch.cuda.set_rng_state(self.gpu, self.device)
            yield


def embed(
    tower: nn.Module, inputs: Any, autocast: Callable[[], contextlib.AbstractContextManager]
) -> Tensor:
    """Run a tower under the autocast policy; the loss always sees float32 embeddings."""
    with autocast():
        return tower(inputs).float()  # (B, D)


def is_trainable(tower: nn.Module) -> bool:
    """Whether any parameter of ``tower`` takes gradients (a frozen tower needs no graph)."""
    return any(p.requires_grad for p in tower.parameters())


def contrastive_backward(
    towers: Mapping[str, nn.Module],
    sides: Mapping[str, str],
    inputs: Mapping[str, Any],
    loss_fn: LossFn,
    chunk_size: int | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, Tensor]:
    """Embed every side of a batch, compute the loss and backpropagate it into the towers.

    Args:
        towers: tower name -> module mapping a side's inputs to embeddings ``(B, D)``.
        sides: batch side ("query", "positive", "negative") -> name of the tower embedding it.
        inputs: batch side -> that side's tower inputs.
        loss_fn: maps side -> embeddings to named loss parts (see ``losses``).
        chunk_size: items per GradCache chunk; None embeds each side at once (plain backward).
        autocast: context factory wrapping tower forwards (e.g. bf16 autocast).

    Returns:
        The loss parts, detached. Parameter ``.grad`` holds the gradient of their ``_loss`` sum.
    """
    if chunk_size is None:
        embeddings = {}
        for side, side_inputs in inputs.items():
            tower = towers[sides[side]]
            with contextlib.nullcontext() if is_trainable(tower) else torch.no_grad():
                embeddings[side] = embed(tower, side_inputs, autocast)
        parts = loss_fn(embeddings)
        total_loss(parts).backward()
        return {name: value.detach() for name, value in parts.items()}
    return _cached_backward(towers, sides, inputs, loss_fn, chunk_size, autocast)


def _cached_backward(
    towers: Mapping[str, nn.Module],
    sides: Mapping[str, str],
    inputs: Mapping[str, Any],
    loss_fn: LossFn,
    chunk_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> dict[str, Tensor]:
    """GradCache: graph-free embedding, loss on cached embeddings, chunk-wise re-embedding."""
    chunks = {side: split_inputs(side_inputs, chunk_size) for side, side_inputs in inputs.items()}
    states: dict[str, list[RngState]] = {side: [] for side in chunks}
    cached: dict[str, Tensor] = {}
    with torch.no_grad():
        for side, side_chunks in chunks.items():
            outputs = []
            for chunk in side_chunks:
                states[side].append(RngState(first_tensor(chunk).device))
                outputs.append(embed(towers[sides[side]], chunk, autocast))
            cached[side] = torch.cat(outputs).requires_grad_()  # (B, D)

    parts = loss_fn(cached)
    total_loss(parts).backward()  # fills cached[side].grad, and grads of loss parameters

    for side, side_chunks in chunks.items():
        tower = towers[sides[side]]
        if not is_trainable(tower):
            continue
        grads = cached[side].grad.split(chunk_size)
        for chunk, state, grad in zip(side_chunks, states[side], grads, strict=True):
            with state.replay():
                embedding = embed(tower, chunk, autocast)
            embedding.backward(grad)
    return {name: value.detach() for name, value in parts.items()}
