"""A killed MMEB run resumes: finished datasets are kept, the rest are computed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_eval_support import EXPECTED, LookupEmbedder, build_fixture

from mmembed.eval import evaluate_mmeb

TESTS = Path(__file__).resolve().parent
CHILD = """
import json, sys
import numpy as np
from test_eval_support import LookupEmbedder
from mmembed.eval import evaluate_mmeb

table = {{k: np.array(v) for k, v in json.load(open({table!r})).items()}}
evaluate_mmeb(LookupEmbedder(table, delay=1.0), {data!r}, out_dir={out!r})
"""


def test_killed_run_resumes_where_it_stopped(tmp_path):
    fixture = build_fixture(tmp_path / "data")
    out = tmp_path / "out"
    table_file = tmp_path / "table.json"
    table_file.write_text(json.dumps({k: v.tolist() for k, v in fixture.table.items()}))
    script = CHILD.format(table=str(table_file), data=str(fixture.data_dir), out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    results = out / "datasets"
    try:
        deadline = time.monotonic() + 120
        while not list(results.glob("*.json")):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no dataset finished in time"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        child.stderr.close()
    done = sorted(p.stem for p in results.glob("*.json"))
    assert done == ["ImageNet-1K"], done  # killed during the second dataset
    assert not list(results.glob(".*.tmp"))  # no half-written result next to the real ones
    first = (results / "ImageNet-1K.json").read_bytes()

    embedder = LookupEmbedder(fixture.table)
    report = evaluate_mmeb(embedder, fixture.data_dir, out_dir=out)
    assert not [key for key in embedder.seen if "ImageNet-1K/" in key or key == "T:tabby cat"]
    assert (results / "ImageNet-1K.json").read_bytes() == first  # not recomputed
    data = json.loads((out / "report.json").read_text())
    assert {name: entry["score"] for name, entry in data["datasets"].items()} == EXPECTED
    assert report.datasets["ImageNet-1K"].score == EXPECTED["ImageNet-1K"]
