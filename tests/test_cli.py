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
