"""Two real processes (gloo, CPU) give the loss and gradients of one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from mmembed.train import TrainConfig, train
from mmembed.train.config import from_dict
from mmembed.train.distributed import DistEnv, average_gradients, gather_pairs
from mmembed.train.gradcache import contrastive_backward
from mmembed.train.logs import read_metrics
from mmembed.train.losses import InfoNCELoss, MatryoshkaLoss

SIDES = {"query": "left", "positive": "right", "negative": "right"}
SHARES = [(0, 5), (5, 8)]  # unequal row counts, as when a process skipped unreadable samples
NEGATIVE_SHARES = [(0, 4), (4, 10)]


@pytest.fixture(scope="module")
def demo_pairs(tmp_path_factory):
    from mmembed.train.demo_data import write_demo_photos

    return write_demo_photos(tmp_path_factory.mktemp("photos"))


def _model():
    torch.manual_seed(0)
    towers = nn.ModuleDict(
        {
            "left": nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 16)),
            "right": nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 16)),
        }
    )
    return towers, MatryoshkaLoss(InfoNCELoss(temperature=0.1), dims=[16, 8])


def _global_batch():
    generator = torch.Generator().manual_seed(1)
    return {
        "query": torch.randn(8, 12, generator=generator),
        "positive": torch.randn(8, 12, generator=generator),
        "negative": torch.randn(10, 12, generator=generator),
    }


def _step(env: DistEnv, inputs: dict, chunk_size: int | None) -> tuple[dict, dict]:
    """Loss parts (mean over processes) and averaged gradients of one step."""
    towers, loss = _model()

    def loss_fn(e):
        return loss(gather_pairs(e["query"], e["positive"], e.get("negative"), env))

    parts = contrastive_backward(towers, SIDES, inputs, loss_fn, chunk_size=chunk_size)
    params = list(towers.parameters()) + list(loss.parameters())
    average_gradients(params, env)
    if env.is_distributed:
        for value in parts.values():
            dist.all_reduce(value)
            value /= env.world_size
    named = {**dict(towers.named_parameters()), **dict(loss.named_parameters())}
    return parts, {name: p.grad.clone() for name, p in named.items()}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    env = DistEnv(rank=rank, world_size=world)
    batch = _global_batch()
    start, stop = SHARES[rank]
    neg_start, neg_stop = NEGATIVE_SHARES[rank]
    local = {
        "query": batch["query"][start:stop],
        "positive": batch["positive"][start:stop],
        "negative": batch["negative"][neg_start:neg_stop],
    }
    results = {str(chunk): _step(env, local, chunk) for chunk in (None, 2)}
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    reference_parts, reference_grads = _step(DistEnv(), _global_batch(), None)
    worst = 0.0
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for parts, grads in results.values():  # plain backward and GradCache
            for name, value in reference_parts.items():
                if name.endswith("_loss"):
                    assert torch.allclose(parts[name], value, atol=1e-6), name
            assert grads.keys() == reference_grads.keys()
            worst = max(worst, *((grads[k] - reference_grads[k]).abs().max().item() for k in grads))
    assert worst <= 1e-5


def test_torchrun_training_matches_single_process(tmp_path, demo_pairs):
    """The real entry point under torchrun (with GradCache) gives the per-step losses of one
    process without GradCache."""
    text = """
task: tiny_clip
task_options: {{tiny: {{width: 32, layers: 1, heads: 2, embed_dim: 32, context_length: 12}}}}
output_dir: {out}
data: {{format: image_caption, path: {data}}}
optim: {{lr: 0.001, warmup_steps: 1}}
steps: 3
batch_size: 8
chunk_size: {chunk}
progress_bar: false
save_every: 100
"""
    two = tmp_path / "two.yaml"
    two.write_text(text.format(out=tmp_path / "two", data=demo_pairs, chunk=2))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    done = subprocess.run(
        [*command, "-m", "mmembed.cli.train", str(two)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    one = from_dict(
        TrainConfig,
        yaml.safe_load(text.format(out=tmp_path / "one", data=demo_pairs, chunk="null")),
    )
    train(one)
    runs = [read_metrics(tmp_path / name / "metrics.jsonl") for name in ("one", "two")]
    assert [r["step"] for r in runs[1]] == [1, 2, 3]
    for single, double in zip(*runs, strict=True):
        assert single["loss"] == pytest.approx(double["loss"], abs=1e-5)
        print(single["loss"], double["loss"], abs(single["loss"] - double["loss"]))
