"""The README's serve examples, run against ``mmembed serve --model mmembed-mini`` started as a
user starts it (a subprocess of the real command): each ``curl`` command's output matches the
JSON pasted under it, and the Python ``openai`` example prints what its comment says."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from serve_helpers import free_port

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CURL = re.compile(r"<!-- serve-curl[^>]*-->\n```bash\n(.*?)```\n```json\n(.*?)```", re.S)
PYTHON = re.compile(r"<!-- serve-python[^>]*-->\n```python\n(.*?)```", re.S)
README_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def command_server(mini_onnx_home):
    port = free_port()
    env = {**os.environ, "MMEMBED_HOME": str(mini_onnx_home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mmembed.cli", "serve", "--model", "mmembed-mini"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            assert process.poll() is None, process.communicate()[1][-3000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    assert json.loads(response.read()) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "mmembed serve --model did not start"
                time.sleep(0.5)
        yield base
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert "serving model mmembed-mini" in out
    finally:
        if process.poll() is None:
            process.kill()


def same(got: object, pasted: object, where: str = "") -> None:
    """Equal JSON, floats within 1e-6."""
    if isinstance(pasted, float):
        assert got == pytest.approx(pasted, abs=1e-6), where
    elif isinstance(pasted, dict):
        assert isinstance(got, dict) and set(got) == set(pasted), (where, got, pasted)
        for key in pasted:
            same(got[key], pasted[key], f"{where}.{key}")
    elif isinstance(pasted, list):
        assert isinstance(got, list) and len(got) == len(pasted), (where, got, pasted)
        for number, (a, b) in enumerate(zip(got, pasted, strict=True)):
            same(a, b, f"{where}[{number}]")
    else:
        assert got == pasted, (where, got, pasted)


def test_readme_curl_examples_print_what_the_readme_shows(command_server):
    examples = CURL.findall(README)
    assert len(examples) >= 3
    for command, pasted in examples:
        assert README_URL in command
        run = subprocess.run(
            ["bash", "-c", command.replace(README_URL, command_server)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        same(json.loads(run.stdout), json.loads(pasted), command.splitlines()[0])


def test_readme_openai_example_prints_what_its_comment_says(command_server, tmp_path):
    pytest.importorskip("openai")
    (code,) = PYTHON.findall(README)
    expected = re.search(r"print\(.*\)\s*#\s*(.+)$", code, re.M).group(1).strip()
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_URL, command_server))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "--model NAME"),
        (["--model", "mmembed-mini", "--max-batch", "0"], "--max-batch"),
        (["--model", "mmembed-mini", "--max-wait-ms", "-1"], "--max-wait-ms"),
        (["--model", "mmembed-mini", "--port", "70000"], "--port"),
        (["--model", "mmembed-mini", "--allow-files", "/no/such/folder"], "--allow-files"),
        (["/no/such/index"], "no index"),
    ],
)
def test_serve_arguments_are_checked_before_any_model_loads(cli, args, words):
    code, _, err = cli("serve", *args)
    assert code == 2 and words in err and cli.loads == []
