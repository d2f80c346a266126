"""A user's mistake ends in one line, before any heavy import; a model folder works from anywhere.

Speed is not asserted (benchmarks/ measure it): what is asserted is that torch and the other
heavy libraries were never imported on the error path, which is what made these errors slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmembed.cli
from mmembed.cli.search import check_recorded_model
from mmembed.models.reference import check_model, model_reference
from mmembed.retrieval import Index

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "timm", "open_clip", "faiss", "pandas", "ray", "decord"]
MISSING = "runs/no-such-model/final"


def _errors_in_a_fresh_interpreter(cases: list[list[str]], cwd: Path) -> dict:
    """Run ``mmembed ARGS`` for each case in one new interpreter: codes, stderr lines, and the
    heavy modules imported by the end."""
    probe = f"""
import contextlib, io, json, sys
from mmembed.cli import main
results = []
for argv in {cases!r}:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, err.getvalue()])
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"results": results, "heavy": heavy}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_config_and_argument_errors_are_one_line_before_torch(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: tiny_clip\noutput_dir: out\nsteps: 3\n")
    typo = tmp_path / "typo.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [tiny_clip\noutput_dir: out\n")
    typo.write_text("task: tiny_clip\noutput_dir: out\nstepz: 3\n")
    missing_model = f"--model {MISSING!r}: not a model name"
    cases = [
        ("unknown config key(s) ['stepz']", ["train", str(typo)]),
        ("unknown config key(s) ['lrr']", ["train", str(recipe), "--set", "optim.lrr=1"]),
        ("steps: expected int", ["train", str(recipe), "--set", "steps=many"]),
        ("unknown task 'tiny_clp'", ["train", str(recipe), "--set", "task=tiny_clp"]),
        ("expected KEY=VALUE", ["train", str(recipe), "--set", "steps"]),
        (f"init {MISSING!r}: not a model name", ["train", str(recipe), "--set", f"init={MISSING}"]),
        ("no-such.yaml", ["train", str(tmp_path / "no-such.yaml")]),
        ("not valid YAML", ["train", str(broken)]),
        (  # a recipe's own options are checked before torch too
            "unknown config key(s) ['stagee'] in task_options",
            ["train", str(recipe), "--set", "task=clip_realign", "--set", "task_options.stagee=x"],
        ),
        (
            "task_options.tiny.layers: expected int",
            ["train", str(recipe), "--set", "task_options.tiny.layers=two"],
        ),
        (missing_model, ["index", str(REPO / "assets"), "--model", MISSING, "--out", "i"]),
        (missing_model, ["search", str(tmp_path), "a cat", "--model", MISSING]),
        (missing_model, ["embed", "a cat", "--model", MISSING]),
        ("--dim must be at least 1, got 0", ["embed", "a cat", "--dim", "0"]),
        ("--out must end in .npy or .parquet, got x.txt", ["embed", "a cat", "--out", "x.txt"]),
        (missing_model, ["serve", "--model", MISSING]),
        (missing_model, ["eval", "mmeb", "--model", MISSING, "--data", "d", "--out", "o"]),
    ]
    outcome = _errors_in_a_fresh_interpreter([argv for _, argv in cases], tmp_path)
    for (needle, argv), (code, stderr) in zip(cases, outcome["results"], strict=True):
        assert code == 2, (argv, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith(f"mmembed {argv[0]}: "), stderr
        assert needle in stderr, (needle, stderr)
    assert outcome["heavy"] == []


def test_a_missing_model_names_what_it_is_not(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="no such folder"):
        check_model(MISSING)
    with pytest.raises(ValueError, match="a file, not a model folder"):
        check_model(tmp_path / "file.txt")
    assert check_model("mmembed-mini") == "mmembed-mini"
    assert check_model("open_clip:ViT-B-32") == "open_clip:ViT-B-32"
    assert model_reference(tmp_path) == str(tmp_path.resolve())


def test_a_missing_optional_package_names_its_extra(monkeypatch, capsys):
    def needs_skimage(args):
        import skimage_is_not_here  # noqa: F401  (stands for any optional import)

    monkeypatch.setitem(mmembed.cli.EXTRAS, "skimage_is_not_here", ("scikit-image", "train"))
    monkeypatch.setattr("mmembed.cli.models.run", needs_skimage)
    assert mmembed.cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs scikit-image, which is not installed: " in err
    assert 'pip install "mmembed[train]"' in err


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A saved 1-layer open_clip model (random weights): small enough to index with in seconds."""
    from mmembed.train.model import TinyClipCfg, tiny_open_clip

    folder = tmp_path_factory.mktemp("work") / "runs" / "tiny" / "final"
    cfg = TinyClipCfg(width=32, layers=1, embed_dim=32, context_length=12)
    tiny_open_clip(cfg).save(folder)
    return folder


def test_an_index_of_a_relative_model_folder_works_from_anywhere(
    tiny_model, tmp_path, monkeypatch, capsys
):
    work = tiny_model.parents[2]
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    photos = REPO / "assets" / "images"
    argv = ["index", str(photos), "--model", "runs/tiny/final", "--out", "idx", "--workers", "0"]
    assert mmembed.cli.main(argv) == 0
    assert Index.open(work / "idx").info["model"] == str(tiny_model.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    for query in (
        ["a cat"],
        ["--image", str(photos / "cat.jpg")],
        ["--table", str(REPO / "assets/tables/planets.csv")],
    ):
        assert mmembed.cli.main(["search", str(work / "idx"), *query, "-k", "2"]) == 0, query
        assert len(capsys.readouterr().out.splitlines()) == 2
    # an older index recorded the folder as typed: from elsewhere, one line saying what to do
    with pytest.raises(ValueError, match="built with the model 'runs/tiny/final'.*give --model"):
        check_recorded_model(work / "idx", "runs/tiny/final")


def test_serve_takes_the_index_model_by_a_relative_folder_and_old_records(
    tiny_model, tmp_path, monkeypatch
):
    from mmembed.errors import UsageError
    from mmembed.models.reference import same_model
    from mmembed.serve.config import ServeCfg
    from mmembed.serve.server import build_app

    work = tiny_model.parents[2]
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    photos = REPO / "assets" / "images"
    argv = ["index", str(photos), "--model", "runs/tiny/final", "--out", "idx2", "--workers", "0"]
    assert mmembed.cli.main(argv) == 0
    # --model typed relative to here names the folder the index recorded as an absolute path
    app = build_app(ServeCfg(), work / "idx2", model="runs/tiny/final")
    assert app is not None
    with pytest.raises(UsageError, match="not --model"):
        build_app(ServeCfg(), work / "idx2", model="mmembed-mini")
    # an older index's relative record is matched by the folder's last parts, from anywhere
    assert same_model(tiny_model, "runs/tiny/final")
    assert not same_model(tiny_model, "runs/other/final")
    assert not same_model("mmembed-mini", "runs/tiny/final")
