"""Contrastive losses: values against hand-written references, parts, temperature, Matryoshka."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmembed.train.config import LossConfig
from mmembed.train.losses import (
    InfoNCELoss,
    MatryoshkaLoss,
    PairEmbeddings,
    build_loss,
    total_loss,
)


def _embeddings(batch: int = 6, dim: int = 16, negatives: int = 0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, dim, generator=generator)
    positive = torch.randn(batch, dim, generator=generator)
    negative = torch.randn(negatives, dim, generator=generator) if negatives else None
    return query, positive, negative


def _clip_reference(query, positive, negative, scale):
    q, p = F.normalize(query, dim=-1), F.normalize(positive, dim=-1)
    candidates = p if negative is None else torch.cat([p, F.normalize(negative, dim=-1)])
    labels = torch.arange(len(q))
    forward = F.cross_entropy(scale * q @ candidates.T, labels)
    backward = F.cross_entropy(scale * p @ q.T, labels)
    return (forward + backward) / 2


def test_infonce_matches_clip_loss():
    query, positive, _ = _embeddings()
    loss = InfoNCELoss(temperature=0.05)
    parts = loss(PairEmbeddings.single(query, positive))
    expected = _clip_reference(query, positive, None, 20.0)
    assert torch.allclose(parts["contrastive_loss"], expected, atol=1e-6)
    assert parts["logit_scale"].item() == pytest.approx(20.0)
    assert {"contrastive_loss", "logit_scale", "accuracy"} == set(parts)


def test_hard_negatives_are_extra_candidates():
    query, positive, negative = _embeddings(negatives=12)
    loss = InfoNCELoss(temperature=0.1)
    with_negatives = loss(PairEmbeddings.single(query, positive, negative))["contrastive_loss"]
    expected = _clip_reference(query, positive, negative, 10.0)
    assert torch.allclose(with_negatives, expected, atol=1e-6)
    without = loss(PairEmbeddings.single(query, positive))["contrastive_loss"]
    assert with_negatives > without  # more candidates, harder softmax


def test_one_directional_loss():
    query, positive, _ = _embeddings()
    parts = InfoNCELoss(temperature=0.1, symmetric=False)(PairEmbeddings.single(query, positive))
    logits = 10.0 * F.normalize(query, dim=-1) @ F.normalize(positive, dim=-1).T
    assert torch.allclose(parts["contrastive_loss"], F.cross_entropy(logits, torch.arange(6)))


def test_learned_temperature_is_a_clamped_log_parameter():
    learned = InfoNCELoss(temperature=0.07, max_logit_scale=100.0)
    assert isinstance(learned.log_logit_scale, torch.nn.Parameter)
    assert learned.log_logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        learned.log_logit_scale.fill_(10.0)
    learned.post_step()
    assert learned.log_logit_scale.item() == pytest.approx(math.log(100.0))

    fixed = InfoNCELoss(temperature=0.07, learn_temperature=False)
    assert not any(True for _ in fixed.parameters())
    query, positive, _ = _embeddings()
    fixed(PairEmbeddings.single(query.requires_grad_(), positive))["contrastive_loss"].backward()
    assert query.grad is not None

    with pytest.raises(ValueError):
        InfoNCELoss(temperature=0.001, max_logit_scale=100.0)


def test_matryoshka_is_weighted_sum_over_truncated_dims():
    query, positive, negative = _embeddings(dim=32, negatives=3)
    base = InfoNCELoss(temperature=0.1)
    loss = MatryoshkaLoss(base, dims=[32, 16, 8], weights=[1.0, 0.5, 0.25])
    emb = PairEmbeddings.single(query, positive, negative)
    parts = loss(emb)
    assert {"contrastive_d32_loss", "contrastive_d16_loss", "contrastive_d8_loss"} <= set(parts)
    expected = sum(
        w * _clip_reference(query[:, :d], positive[:, :d], negative[:, :d], 10.0)
        for d, w in [(32, 1.0), (16, 0.5), (8, 0.25)]
    )
    assert torch.allclose(total_loss(parts), expected, atol=1e-5)
    assert "logit_scale_d8" in parts and not parts["logit_scale_d8"].requires_grad
    with pytest.raises(ValueError):
        loss(emb.truncate(4))  # 16 and 32 do not fit in 4 dims


def test_total_loss_sums_only_loss_parts():
    parts = {
        "a_loss": torch.tensor(1.0),
        "b_loss": torch.tensor(2.0),
        "accuracy": torch.tensor(9.0),
    }
    assert total_loss(parts).item() == 3.0
    with pytest.raises(ValueError):
        total_loss({"accuracy": torch.tensor(1.0)})


def test_build_loss_from_config():
    assert isinstance(build_loss(LossConfig()), InfoNCELoss)
    loss = build_loss(LossConfig(matryoshka_dims=[8, 4], learn_temperature=False))
    assert isinstance(loss, MatryoshkaLoss) and loss.weights == [1.0, 1.0]


def test_local_shares_add_up_to_the_global_loss():
    """What each process computes (local anchors, global candidates, weight) sums to the global mean."""
    query, positive, negative = _embeddings(batch=8, negatives=4)
    loss = InfoNCELoss(temperature=0.1)
    full = loss(PairEmbeddings.single(query, positive, negative))["contrastive_loss"]
    world, shares = 2, []
    for start, stop in [(0, 5), (5, 8)]:  # unequal shares, as after skipped samples
        emb = PairEmbeddings(
            query[start:stop],
            positive[start:stop],
            query,
            positive,
            negative,
            offset=start,
            weight=(stop - start) * world / 8,
        )
        shares.append(loss(emb)["contrastive_loss"])
    assert torch.allclose(torch.stack(shares).mean(), full, atol=1e-6)
