"""The mmembed command, run in-process through its entry point."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmembed.cli import main


def test_embed_writes_npy_and_parquet(tmp_path, capsys):
    inputs = ["assets/images/cat.jpg", "a cat", "assets/tables/planets.csv"]
    assert main(["embed", *inputs, "--out", str(tmp_path / "v.npy")]) == 0
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (3, 384)
    assert main(["embed", *inputs, "--dim", "128", "--out", str(tmp_path / "v.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "v.parquet")
    assert list(frame["modality"]) == ["image", "text", "table"]
    assert len(frame["embedding"][0]) == 128
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_embed_reports_missing_file_and_keeps_the_rest(capsys):
    assert main(["embed", "a cat", "/no/such/photo.jpg"]) == 0
    captured = capsys.readouterr()
    assert "image file not found: /no/such/photo.jpg" in captured.err
    assert captured.out.count("384-d") == 2


def test_models_lists_mini(capsys):
    assert main(["models"]) == 0
    assert "mmembed-mini" in capsys.readouterr().out


def test_input_errors_print_on_one_line(tmp_path, capsys):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    assert main(["embed", "a cat", str(ragged), "caf\udce9"]) == 0
    lines = capsys.readouterr().err.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 2, lines
    assert "ragged.csv" in skipped[0] and "Expected 2 fields in line 3, saw 4" in skipped[0]
    assert skipped[1] == (
        "skipped 'caf\\udce9': text is not valid Unicode: 'caf\\udce9' has an unpaired "
        "surrogate at character 3"
    )
    assert main(["embed", str(ragged), "--on-error", "raise"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mmembed embed: item 0: table file ")
