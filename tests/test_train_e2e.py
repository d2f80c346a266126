"""The loop a user runs: train a recipe, then evaluate, index and search with its final/ model.

Every step is the ``mmembed`` command line in this process, and every step after training
uses the trained model and nothing else (the index records it; search reloads it from there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.data import write_mmeb_fixture
from mmembed import Index
from mmembed.cli import main
from mmembed.train.logs import read_metrics

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_eval_index_search_with_the_trained_model(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["steps=12", "save_every=6", "progress_bar=false", "tensorboard=false"]
    sets += [f"data.path={tmp_path / 'photos'}"]
    argv = ["train", str(ROOT / "configs" / "tiny_clip.yaml"), "--output", str(run)]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    final = run / "final"
    assert f"model: {final}" in printed
    assert f"mmembed eval mmeb --model {final}" in printed
    assert f"mmembed index FOLDER --model {final}" in printed
    assert json.loads((final / "training.json").read_text())["steps"] == 12

    data, _ = write_mmeb_fixture(tmp_path / "mmeb")
    report = tmp_path / "report"
    eval_args = ["--data", str(data), "--datasets", "ImageNet-1K", "MSCOCO_t2i"]
    assert main(["eval", "mmeb", "--model", str(final), *eval_args, "--out", str(report)]) == 0
    scores = json.loads((report / "report.json").read_text())["datasets"]
    assert set(scores) == {"ImageNet-1K", "MSCOCO_t2i"}
    assert all(entry["model"] == str(final) for entry in scores.values())
    assert all(0.0 <= entry["score"] <= 1.0 for entry in scores.values())

    index = tmp_path / "index"
    assert main(["index", str(ROOT / "assets"), "--model", str(final), "--out", str(index)]) == 0
    capsys.readouterr()
    assert main(["search", str(index), "a tabby cat with green eyes", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) >= 5 and hits[0]["rank"] == 1
    assert {hit["modality"] for hit in hits} >= {"image", "video", "table", "document"}
    assert Index.open(index).info["model"] == str(final)  # what search reloaded


def test_a_diverging_run_stops_at_the_step_with_one_line_and_saves_no_model(tmp_path, capsys):
    """lr 1e30 without clipping sends the loss to NaN at step 2: the run must stop there and
    say so, rather than train on and save NaN weights as final/."""
    run = tmp_path / "run"
    sets = ["steps=6", "save_every=3", "progress_bar=false", "tensorboard=false"]
    sets += [f"data.path={tmp_path / 'photos'}", "optim.lr=1e30", "optim.warmup_steps=0"]
    sets += ["optim.max_grad_norm=null"]
    argv = ["train", str(ROOT / "configs" / "tiny_clip.yaml"), "--output", str(run)]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mmembed train: step 2 diverged: {'loss': nan"), error
    assert "non-finite gradients: " in error and "then --resume" in error
    assert len(error.splitlines()) == 1
    assert not (run / "final").exists()


def _train_in_a_subprocess(output: Path, photos: Path, **env: str) -> subprocess.CompletedProcess:
    sets = ["steps=2", "save_every=2", "progress_bar=false", "tensorboard=false"]
    sets += [f"data.path={photos}"]
    command = [sys.executable, "-m", "mmembed.cli.train", str(ROOT / "configs" / "tiny_clip.yaml")]
    command += ["--output", str(output), *(a for s in sets for a in ("--set", s))]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_omp_thread_limit_below_torchs_threads_trains_the_same_curve(tmp_path):
    """OMP_THREAD_LIMIT=1 (Tesseract's usual setting, inherited by subprocesses) under torch's
    2 threads made the first gradient norm inf; mmembed runs torch within the limit."""
    from mmembed.train.demo_data import write_demo_photos

    photos = write_demo_photos(tmp_path / "photos").parent
    plain = _train_in_a_subprocess(tmp_path / "plain", photos)
    limited = _train_in_a_subprocess(tmp_path / "limited", photos, OMP_THREAD_LIMIT="1")
    assert plain.returncode == 0 and limited.returncode == 0, limited.stderr[-2000:]
    expected = read_metrics(tmp_path / "plain" / "metrics.jsonl")
    got = read_metrics(tmp_path / "limited" / "metrics.jsonl")
    for a, b in zip(expected, got, strict=True):
        for key in ("loss", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-4 * abs(a[key]), (a["step"], key, a[key], b[key])
    assert "OMP_THREAD_LIMIT=1 is below torch's" in limited.stderr or os.cpu_count() == 1
