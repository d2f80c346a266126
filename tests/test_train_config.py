"""Typed config from YAML, example configs, freezing, optimizer groups and the schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from debian import CORPORA, HELD_OUT_FONTS, TRAINING_FONTS, needs
from torch import nn

from mmembed.train.config import LossConfig, TrainConfig, from_dict, load_config
from mmembed.train.optim import build_optimizer, cosine_schedule, freeze_by_prefix
from mmembed.train.tasks import build_task

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
# a recipe drawing pages in Debian's fonts checks at build time that they are installed
CONFIG_CASES = [
    pytest.param(path, marks=needs(*CORPORA, *TRAINING_FONTS, *HELD_OUT_FONTS))
    if "fonts" in (yaml.safe_load(path.read_text()).get("task_options") or {})
    else path
    for path in CONFIGS
]


@pytest.mark.parametrize("path", CONFIG_CASES, ids=lambda p: p.name)
def test_example_configs_load_and_name_a_task(path):
    config = load_config(path)
    task = build_task(config)
    assert set(task.sides) >= {"query", "positive"}
    assert type(task.options).__name__.endswith("Options")


def test_yaml_becomes_nested_dataclasses(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "task: tiny_clip\noutput_dir: out\nloss: {matryoshka_dims: [8, 4], temperature: 0.05}\n"
        "optim: {lr: 0.01}\ndata: {format: text_pairs, path: x.csv}\nchunk_size: 4\n"
    )
    config = load_config(path)
    assert isinstance(config.loss, LossConfig) and config.loss.matryoshka_dims == [8, 4]
    assert config.optim.lr == 0.01 and config.optim.betas == [0.9, 0.98]
    assert config.data.format == "text_pairs" and config.chunk_size == 4


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"task": "t", "output_dir": "o", "stepz": 3}, "stepz"),
        ({"task": "t", "output_dir": "o", "loss": {"temprature": 0.1}}, "temprature.*in loss"),
        ({"output_dir": "o"}, "task"),
    ],
)
def test_unknown_and_missing_keys_name_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        from_dict(TrainConfig, raw)


def test_validation_and_task_options(tmp_path):
    bad = TrainConfig(task="tiny_clip", output_dir="o", precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        bad.validate()
    with pytest.raises(ValueError, match="matryoshka_weights"):
        TrainConfig(task="t", output_dir="o", loss=LossConfig(matryoshka_weights=[1.0])).validate()
    typo = TrainConfig(task="tiny_clip", output_dir="o", task_options={"widht": 8})
    with pytest.raises(ValueError, match="widht"):
        build_task(typo)
    with pytest.raises(ValueError, match="unknown task"):
        build_task(TrainConfig(task="nope", output_dir="o"))
    tiny = {"tiny": {"width": 8}}
    options = build_task(TrainConfig(task="tiny_clip", output_dir="o", task_options=tiny))
    assert options.options.tiny.width == 8 and options.options.tiny.layers == 2
    with pytest.raises(ValueError, match=r"task_options\.tiny\.layers: expected int"):
        build_task(
            TrainConfig(task="tiny_clip", output_dir="o", task_options={"tiny": {"layers": "2"}})
        )


def test_freeze_by_prefix_and_decay_groups():
    module = nn.ModuleDict(
        {"image": nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), "text": nn.Linear(4, 4)}
    )
    frozen = freeze_by_prefix(module, ["image.0."])
    assert frozen == ["image.0.weight", "image.0.bias"]
    with pytest.raises(ValueError, match="match no parameter"):
        freeze_by_prefix(module, ["imgae."])
    from mmembed.train.config import OptimConfig

    optimizer = build_optimizer(module, OptimConfig(weight_decay=0.2))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.2 and [p.shape for p in decayed["params"]] == [(4, 4)]
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 3  # norm gain, norm bias, bias


def test_cosine_schedule_with_warmup():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    schedule = cosine_schedule(optimizer, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    rates = []
    for _ in range(15):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert rates[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))


def test_set_overrides_any_field_with_its_type(tmp_path):
    path = CONFIGS[0].parent / "tiny_clip.yaml"
    sets = ["steps=20", "optim.lr=1e-4", "task_options.tiny.width=32", "init=open_clip:RN50"]
    config = load_config(path, sets)
    assert config.steps == 20 and config.optim.lr == pytest.approx(1e-4)
    assert config.task_options["tiny"]["width"] == 32 and config.init == "open_clip:RN50"
    assert config.task_options["tiny"]["layers"] == 2  # the rest of the section is kept


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", r"unknown config key\(s\) \['stepz'\] in TrainConfig"),
        ("steps=twenty", "steps: expected int, got 'twenty'"),
        ("optim.lr=[1]", "optim.lr: expected float"),
        ("loss.matryoshka_dims=[8, x]", "loss.matryoshka_dims: expected list"),
        ("progress_bar=3", "progress_bar: expected bool"),
        ("steps", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS[0].parent / "tiny_clip.yaml", [override])


def test_cli_refuses_bad_configs_before_any_work(tmp_path, capsys, monkeypatch):
    import argparse

    from mmembed.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "run.yaml", "--resume", "--output", "o", "--set", "a=1"])
    assert args.func is cli.run and args.resume and args.config == Path("run.yaml")
    assert args.output == Path("o") and args.overrides == ["a=1"]

    def no_training(*args, **kwargs):
        raise AssertionError("a bad config must be refused before training starts")

    monkeypatch.setattr("mmembed.train.train", no_training)
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: tiny_clip\noutput_dir: out\nstep: 3\n")
    tiny = str(CONFIGS[0].parent / "tiny_clip.yaml")
    cases = [
        ([str(bad)], "['step']"),
        ([tiny, "--set", "steps=x"], "steps: expected int"),
        ([tiny, "--set", "task_options.augmnt=false"], "['augmnt'] in task_options"),
        ([tiny, "--set", "task=nope"], "unknown task 'nope'"),
    ]
    for argv, message in cases:
        assert cli.run(parser.parse_args(["train", *argv])) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
