"""Checkpoints: atomic writes, and a run killed with SIGKILL resumes onto the same loss curve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import mmembed
from mmembed.train.checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from mmembed.train.logs import read_metrics, truncate_metrics

STEPS = 16
CONFIG = """
task: tiny_clip
task_options: {{tiny: {{width: 32, layers: 1, heads: 2, embed_dim: 32, context_length: 12}}}}
output_dir: {out}
data: {{format: image_caption, path: {data}}}
loss: {{matryoshka_dims: [32, 16]}}
optim: {{lr: 0.002, warmup_steps: 5, max_grad_norm: 1.0}}
steps: {steps}
batch_size: 6
chunk_size: 4
save_every: 4
keep_checkpoints: 2
progress_bar: false
"""


@pytest.fixture(scope="module")
def demo_pairs(tmp_path_factory):
    from mmembed.train.demo_data import write_demo_photos

    return write_demo_photos(tmp_path_factory.mktemp("photos"))


def _command(config_path, *extra):
    return [sys.executable, "-m", "mmembed.cli.train", str(config_path), *extra]


def test_killed_run_resumes_onto_the_uninterrupted_loss_curve(tmp_path, demo_pairs):
    paths = {}
    for name in ("straight", "killed"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(CONFIG.format(out=tmp_path / name, data=demo_pairs, steps=STEPS))

    # Start the run to be killed first, and the uninterrupted one next to it.
    logs = {name: tmp_path / f"{name}.stderr" for name in paths}  # read when a run fails
    with logs["killed"].open("w") as err:
        victim = subprocess.Popen(_command(paths["killed"]), stderr=err)
    with logs["straight"].open("w") as err:
        straight = subprocess.Popen(_command(paths["straight"]), stderr=err)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 90
    while latest_checkpoint(checkpoints) is None and victim.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert straight.wait(timeout=120) == 0, logs["straight"].read_text()[-3000:]

    killed_at = load_checkpoint(latest_checkpoint(checkpoints))["step"]
    assert 0 < killed_at < STEPS, "the run must be killed mid-way"
    assert not (tmp_path / "killed" / "final").exists()
    with pytest.raises(ValueError, match="without final/") as error:  # a killed run is no model
        mmembed.load(tmp_path / "killed")
    assert f"mmembed train {tmp_path / 'killed' / 'config.yaml'} --resume" in str(error.value)
    done = subprocess.run(_command(paths["killed"], "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert mmembed.load(tmp_path / "killed" / "final").dim == 32

    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))  # no step twice
    for a, b in zip(expected, resumed, strict=True):
        for key in (
            "loss",
            "contrastive_d32_loss",
            "contrastive_d16_loss",
            "logit_scale_d32",
            "lr",
        ):
            assert abs(a[key] - b[key]) <= 1e-6, (a["step"], key, a[key], b[key])
        assert a["epoch"] == b["epoch"]
    assert expected[-1]["loss"] < expected[0]["loss"]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    save_checkpoint({"step": 3, "x": torch.ones(2)}, tmp_path / "step_00000003.pt")

    def crash(payload, stream):
        stream.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 4}, tmp_path / "step_00000004.pt")
    assert latest_checkpoint(tmp_path).name == "step_00000003.pt"  # the partial file is ignored
    assert load_checkpoint(latest_checkpoint(tmp_path))["x"].tolist() == [1.0, 1.0]


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    from mmembed.train.checkpoint import restore_rng

    save_checkpoint({"step": 1, "rng": capture_rng(torch.device("cpu"))}, tmp_path / "c.pt")
    expected = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"], torch.device("cpu"))
    again = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_truncate_metrics_drops_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')
    truncate_metrics(path, 2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
