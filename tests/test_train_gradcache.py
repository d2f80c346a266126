"""GradCache: chunked embedding with cached gradients equals full-batch backpropagation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmembed.train.gradcache import contrastive_backward, split_inputs
from mmembed.train.losses import InfoNCELoss, MatryoshkaLoss, PairEmbeddings, total_loss

SIDES = {"query": "left", "positive": "right", "negative": "right"}


class Tower(nn.Module):
    """A small MLP tower; its input is a tensor or a dict with a feature tensor and a scale."""

    def __init__(self, dim_in: int = 12, dim_out: int = 16, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim_in, 32), nn.GELU(), nn.Dropout(dropout), nn.Linear(32, dim_out)
        )

    def forward(self, inputs):
        if isinstance(inputs, dict):
            return self.net(inputs["features"]) * inputs["scale"]
        return self.net(inputs)


def _setup(dropout: float = 0.0, negatives: int = 0, seed: int = 0):
    torch.manual_seed(seed)
    towers = nn.ModuleDict({"left": Tower(dropout=dropout), "right": Tower(dropout=dropout)})
    loss = MatryoshkaLoss(InfoNCELoss(temperature=0.1), dims=[16, 8])
    inputs = {
        "query": torch.randn(10, 12),
        "positive": {"features": torch.randn(10, 12), "scale": torch.rand(10, 1) + 0.5},
    }
    if negatives:
        inputs["negative"] = {
            "features": torch.randn(negatives, 12),
            "scale": torch.ones(negatives, 1),
        }
    return towers, loss, inputs


def _loss_fn(loss):
    return lambda e: loss(PairEmbeddings.single(e["query"], e["positive"], e.get("negative")))


def _grads(*modules) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{name}": p.grad.clone()
        for i, module in enumerate(modules)
        for name, p in module.named_parameters()
        if p.grad is not None
    }


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 10])
@pytest.mark.parametrize("negatives", [0, 7])
def test_gradcache_equals_full_batch(chunk_size, negatives):
    towers, loss, inputs = _setup(negatives=negatives)
    full = contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=None)
    expected = _grads(towers, loss)
    towers.zero_grad(set_to_none=True)
    loss.zero_grad(set_to_none=True)
    cached = contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=chunk_size)
    got = _grads(towers, loss)
    assert _max_diff(got, expected) <= 1e-5
    assert torch.allclose(total_loss(cached), total_loss(full), atol=1e-6)
    assert "0.left.net.0.weight" in got and "1.base.log_logit_scale" in got


def test_gradcache_replays_dropout_per_chunk():
    """With dropout, the re-embedding pass must reuse each chunk's mask: compare with a
    reference that embeds the same chunks in the same order with a graph."""
    towers, loss, inputs = _setup(dropout=0.3)
    torch.manual_seed(123)
    cached = contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=4)
    got = _grads(towers, loss)
    state_after = torch.get_rng_state()

    towers.zero_grad(set_to_none=True)
    loss.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    embeddings = {
        side: torch.cat([towers[SIDES[side]](chunk) for chunk in split_inputs(value, 4)])
        for side, value in inputs.items()
    }
    reference = _loss_fn(loss)(embeddings)
    total_loss(reference).backward()
    assert _max_diff(got, _grads(towers, loss)) <= 1e-5
    assert torch.allclose(total_loss(cached), total_loss(reference).detach(), atol=1e-6)
    assert torch.equal(state_after, torch.get_rng_state())  # replay leaves the RNG stream alone


def test_frozen_tower_gets_no_graph():
    towers, loss, inputs = _setup()
    towers["left"].requires_grad_(False)
    contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=None)
    expected = _grads(towers, loss)
    towers.zero_grad(set_to_none=True)
    loss.zero_grad(set_to_none=True)
    contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=3)
    got = _grads(towers, loss)
    assert not any(k.startswith("0.left") for k in got)
    assert _max_diff(got, expected) <= 1e-5


def test_bf16_autocast_gives_float32_embeddings_and_close_gradients():
    towers, loss, inputs = _setup()
    contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=5)
    expected = _grads(towers, loss)
    towers.zero_grad(set_to_none=True)
    loss.zero_grad(set_to_none=True)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    parts = contrastive_backward(towers, SIDES, inputs, _loss_fn(loss), chunk_size=5, autocast=bf16)
    got = _grads(towers, loss)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in parts.values())
    scale = max(v.abs().max().item() for v in expected.values())
    assert _max_diff(got, expected) <= 0.1 * scale


def test_split_inputs_handles_nested_inputs():
    inputs = {"a": torch.arange(7), "b": [torch.arange(7) * 2, None], "flag": "x"}
    chunks = split_inputs(inputs, 3)
    assert [len(c["a"]) for c in chunks] == [3, 3, 1]
    assert chunks[2]["b"][0].tolist() == [12] and chunks[1]["flag"] == "x"
    with pytest.raises(TypeError):
        split_inputs({"x": None}, 2)
