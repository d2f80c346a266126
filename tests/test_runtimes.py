"""int8 and OpenVINO runtimes: chosen at load, checked against fp32, saved with the model, and
one line naming the fix when one cannot run; and the one ONNX export helper's check."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

TEXTS = ["a cat on a sofa", "Espresso in a white cup, served hot on a saucer.", "short"]


@pytest.fixture
def home(mini_onnx_home, monkeypatch):
    """The session's MMEMBED_HOME: mini's fp32 text export is there already."""
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    return mini_onnx_home


@pytest.fixture
def fp32(mini, home) -> np.ndarray:
    return mini.encode(TEXTS)


def _copy(mini):
    """A fresh copy of mmembed-mini (its towers' runtimes are set per test)."""
    return copy.deepcopy(mini)


@pytest.mark.parametrize("runtime", ["onnx-int8", "openvino", "openvino-int8"])
def test_runtime_runs_its_engine_within_the_check(mini, fp32, runtime, tmp_path, capfd):
    pytest.importorskip("openvino") if runtime.startswith("openvino") else None
    from mmembed.encoders.engines import OpenVinoSession

    model = _copy(mini).set_runtime(runtime)
    assert capfd.readouterr().out == ""  # making a copy (NNCF's progress bars) keeps stdout clean
    text = model.towers["text"]
    with torch.inference_mode(), text.inference():
        engine = text._active[0]
    assert isinstance(engine, OpenVinoSession) == runtime.startswith("openvino")
    if runtime == "onnx-int8":  # ONNX Runtime on the int8 copy beside the fp32 export
        assert engine._model_path.endswith("-int8/model.onnx")
    # What load promised: mean cosine >= 0.99 on the fixed check sentences, here through encode.
    from mmembed.encoders.onnx_text import CHECK_SENTENCES

    sentences = list(CHECK_SENTENCES)
    kept = (model.encode(sentences) * mini.encode(sentences)).sum(axis=1)
    assert kept.mean() >= 0.99
    # Other texts: no promise beyond closeness (openvino-int8 gave 0.991 / 0.993 / 0.980 here).
    cosines = (model.encode(TEXTS) * fp32).sum(axis=1)
    assert cosines.min() > 0.97
    if runtime == "openvino":  # the fp32 graph; OpenVINO may run it in bf16 (its CPU default)
        assert cosines.min() > 0.9999


def test_runtime_is_saved_with_the_model(mini, home, tmp_path):
    import mmembed

    model = _copy(mini).set_runtime("onnx-int8")
    model.save(tmp_path / "saved")
    loaded = mmembed.load(tmp_path / "saved")
    assert loaded.cfg.runtime == "onnx-int8" and loaded.towers["text"].runtime == "onnx-int8"
    assert mmembed.load(tmp_path / "saved", runtime="torch").towers["text"].runtime == "torch"


def test_missing_openvino_is_one_line_naming_the_extra(mini, home, monkeypatch):
    from mmembed.encoders.engines import RuntimeUnavailable

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(RuntimeUnavailable) as error:
        _copy(mini).set_runtime("openvino")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("runtime 'openvino': the openvino package is not installed")
    assert "pip install 'mmembed[openvino]'" in message


def test_missing_nncf_is_one_line_naming_the_extra(mini, tmp_path, monkeypatch):
    """OpenVINO's int8 copy is made by NNCF: without it, one line and no copy."""
    pytest.importorskip("openvino")
    from mmembed.encoders.engines import RuntimeUnavailable

    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))  # no copy made yet
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(RuntimeUnavailable) as error:
        _copy(mini).set_runtime("openvino-int8")
    assert str(error.value) == (
        "runtime 'openvino-int8': the nncf package is not installed; "
        "pip install 'mmembed[openvino]'"
    )
    assert not list(tmp_path.glob("onnx/*-ov-int8"))


def test_a_copy_failing_its_check_is_refused_not_run(mini, home, fp32, monkeypatch):
    from mmembed.encoders import engines

    monkeypatch.setattr(engines, "MIN_COSINE", 1.5)  # no copy can pass: the check must refuse
    with pytest.raises(engines.RuntimeUnavailable) as error:
        _copy(mini).set_runtime("onnx-int8")
    message = str(error.value)
    assert "\n" not in message and message.startswith("runtime 'onnx-int8': its outputs keep")
    assert "use runtime='onnx'" in message
    # "auto" never runs a copy, so the same check cannot stop it: fp32, torch's vectors.
    model = _copy(mini).set_runtime("auto")
    assert np.abs(model.encode(TEXTS) - fp32).max() <= 1e-5


def test_unknown_runtime_names_the_choices(mini):
    with pytest.raises(ValueError, match="runtime must be one of .*openvino-int8"):
        _copy(mini).set_runtime("tensorrt")


def test_export_helper_refuses_a_graph_that_traced_wrong(tmp_path):
    """A module whose forward branches on its input traces one branch only: the check on other
    inputs catches it and nothing is published."""
    from mmembed.encoders.onnx_export import ExportSpec, export_checked

    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if bool(x.sum() > 0) else -x

    spec = ExportSpec(inputs=("x",), dynamic_axes={"x": {0: "batch"}}, unit=False)
    positive, negative = torch.ones(2, 3), -torch.ones(3, 3)
    folder = tmp_path / "export"
    with pytest.raises(ValueError, match="differs from torch by"):
        export_checked(Branchy(), [positive], [negative], folder, spec, {"digest": "d"}, "c.json")
    assert not folder.exists()
    export_checked(Branchy(), [positive], [positive * 3], folder, spec, {"digest": "d"}, "c.json")
    assert sorted(p.name for p in folder.iterdir()) == [
        "c.json",
        "c.json.xxh3",
        "model.onnx",
        "model.onnx.xxh3",
    ]


@pytest.fixture
def measured(home, monkeypatch):
    """ "auto" measures (the suite pins it to onnx, tests/conftest.py); no record at start."""
    import shutil

    from mmembed.encoders import speed

    monkeypatch.delenv("MMEMBED_AUTO_RUNTIME", raising=False)
    monkeypatch.setattr(speed, "others_per_core", lambda: 0.0)  # a quiet machine (see below)
    speed_folder = home / "onnx" / "speed"
    shutil.rmtree(speed_folder, ignore_errors=True)
    yield speed_folder
    shutil.rmtree(speed_folder, ignore_errors=True)


def _auto_engine(model) -> object | None:
    """What the text tower's "auto" runs: the ONNX session, or None for torch."""
    text = model.towers["text"]
    with torch.inference_mode(), text.inference():
        return text._active


def _races(monkeypatch, seconds: dict[str, float]) -> list[dict]:
    """Replace the timing with fixed medians; returns the list of races run."""
    from mmembed.encoders import speed

    races = []

    def race(runs, rounds=speed.ROUNDS):
        assert sorted(runs) == ["onnx", "torch"]
        races.append(runs)
        return dict(seconds)

    monkeypatch.setattr(speed, "race", race)
    return races


def test_a_near_tie_runs_torch(mini, measured, monkeypatch):
    """ONNX Runtime 3% faster is within the race's noise: torch runs (no export to open)."""
    _races(monkeypatch, {"onnx": 0.97, "torch": 1.0})
    assert _auto_engine(_copy(mini)) is None


@pytest.mark.parametrize("faster", ["onnx", "torch"])
def test_auto_runs_the_engine_measured_faster_and_caches_it(
    mini, fp32, measured, monkeypatch, faster
):
    from mmembed.hub import verified

    races = _races(
        monkeypatch,
        {"onnx": 1.0, "torch": 2.0} if faster == "onnx" else {"onnx": 2.0, "torch": 1.0},
    )
    model = _copy(mini)
    assert (_auto_engine(model) is not None) == (faster == "onnx")
    assert np.abs(model.encode(TEXTS) - fp32).max() <= 1e-5  # either engine: torch's vectors
    (record,) = measured.glob("*.json")
    assert verified.problem(record) is None  # sealed like every cache file
    assert f"-t{torch.get_num_threads()}.json" in record.name
    # Another process on this machine reads the record instead of racing again.
    assert (_auto_engine(_copy(mini)) is not None) == (faster == "onnx")
    assert len(races) == 1


def test_the_race_runs_both_engines_of_the_tower(mini, fp32, measured):
    """The real measurement: both engines run the tower's forward; the record names the winner
    and both medians (which one wins is this machine's business, not the test's)."""
    import json

    model = _copy(mini)
    engine = _auto_engine(model)
    (record,) = measured.glob("*.json")
    found = json.loads(record.read_text())
    assert found["choice"] == ("onnx" if engine is not None else "torch")
    assert found["seconds"]["onnx"] > 0 and found["seconds"]["torch"] > 0
    seconds = found["seconds"]  # ONNX Runtime must win by the margin; a near tie runs torch
    assert found["choice"] == ("onnx" if seconds["onnx"] < 0.95 * seconds["torch"] else "torch")
    assert np.abs(model.encode(TEXTS) - fp32).max() <= 1e-5


def test_a_record_from_elsewhere_or_damaged_is_measured_again(mini, measured, monkeypatch, caplog):
    import json
    import logging

    races = _races(monkeypatch, {"onnx": 2.0, "torch": 1.0})
    _auto_engine(_copy(mini))
    (record,) = measured.glob("*.json")
    found = json.loads(record.read_text())
    # Written on another CPU (a home copied between machines, or a new torch): raced again.
    from mmembed.hub import verified

    verified.publish_file(
        record, lambda tmp: tmp.write_text(json.dumps({**found, "cpu": "another CPU"}))
    )
    _auto_engine(_copy(mini))
    assert len(races) == 2 and json.loads(record.read_text())["cpu"] == found["cpu"]
    edited = record.read_text().replace('"choice": "torch"', '"choice": "onnx" ')
    assert edited != record.read_text()
    record.write_text(edited)  # the same size, another checksum: a hand edit, unsealed
    with caplog.at_level(logging.WARNING):
        assert _auto_engine(_copy(mini)) is None
    assert len(races) == 3 and f"cached file {record}" in caplog.text


def test_the_environment_pins_auto_without_measuring(mini, measured, monkeypatch):
    races = _races(monkeypatch, {"onnx": 1.0, "torch": 2.0})
    monkeypatch.setenv("MMEMBED_AUTO_RUNTIME", "torch")
    assert _auto_engine(_copy(mini)) is None
    monkeypatch.setenv("MMEMBED_AUTO_RUNTIME", "gpu")
    with pytest.raises(ValueError, match="MMEMBED_AUTO_RUNTIME must be one of .*'gpu'"):
        _auto_engine(_copy(mini))
    assert races == [] and not measured.exists()
    # A runtime asked for by name never measures.
    assert _auto_engine(_copy(mini).set_runtime("onnx")) is not None and races == []


def test_a_race_on_a_busy_machine_decides_for_this_process_only(mini, measured, monkeypatch):
    from mmembed.encoders import speed

    races = _races(monkeypatch, {"onnx": 1.0, "torch": 2.0})
    monkeypatch.setattr(speed, "others_per_core", lambda: 2.0)  # others keep both cores busy
    model = _copy(mini)
    assert _auto_engine(model) is not None and _auto_engine(model) is not None
    assert len(races) == 1 and not measured.exists()  # raced once here, nothing cached
    _auto_engine(_copy(mini))
    assert len(races) == 2  # the next process races again


def test_onnx_runs_the_fused_bert_graph_within_1e5_of_torch(mini, fp32, home, monkeypatch):
    """MiniLM's "onnx" runtime opens the copy with ONNX Runtime's attention fusions, checked
    against torch when made; a copy beyond the tolerance leaves the plain export running."""
    import onnx

    from mmembed.encoders import engines

    monkeypatch.setattr(engines, "FUSIONS", {"bert": "bert"})  # off by default (engines.py)
    model = _copy(mini).set_runtime("onnx")
    session, _ = _auto_engine(model)
    assert session._model_path.endswith("-fused/model.onnx")
    ops = {node.op_type for node in onnx.load(session._model_path).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops
    assert np.abs(model.encode(TEXTS) - fp32).max() <= 1e-5
    monkeypatch.setattr(engines, "FUSED_ATOL", -1.0)  # no graph can pass: the plain one runs
    plain, _ = _auto_engine(_copy(mini).set_runtime("onnx"))
    assert not plain._model_path.endswith("-fused/model.onnx")
