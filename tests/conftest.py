"""Session-scoped models, built once: the suite runs on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch
from debian import SKIP_PREFIX

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# runtime="auto" runs ONNX Runtime wherever it may, without timing it against torch first
# (encoders.speed): the suite's vectors and exports do not depend on this machine's speed.
# tests/test_runtimes.py unsets it to test the measurement itself.
os.environ.setdefault("MMEMBED_AUTO_RUNTIME", "onnx")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Tests skipped for a missing Debian package (tests/debian.py): under CI=true the run fails,
# since .ci/run installs every one of them and a skip there hides a test that stopped running.
DEBIAN_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(SKIP_PREFIX):
            DEBIAN_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if DEBIAN_SKIPS and os.environ.get("CI") == "true":
        terminalreporter.section("CI=true: tests skipped for missing Debian packages")
        for line in DEBIAN_SKIPS:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"{len(DEBIAN_SKIPS)} such skips fail the run (.ci/run)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if DEBIAN_SKIPS and os.environ.get("CI") == "true":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def mini():
    import mmembed

    return mmembed.load("mmembed-mini")


@pytest.fixture(scope="session")
def clip():
    """open_clip ViT-B-32 with random weights, seeded: parity tests need no download."""
    import mmembed

    torch.manual_seed(0)
    return mmembed.load("open_clip:ViT-B-32")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread; on a busy 2-core machine it costs 20x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mini_onnx_home(mini, tmp_path_factory):
    """An MMEMBED_HOME holding the ONNX export of mini's text tower (exported once)."""
    from pathlib import Path

    from mmembed.retrieval.fast_query import export_query_encoder

    home = tmp_path_factory.mktemp("mmembed-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMEMBED_HOME", str(home))
        export_query_encoder(mini, Path(tmp_path_factory.mktemp("first-index")))
    return home


@pytest.fixture
def cli(mini, monkeypatch):
    """Run ``mmembed ARGS`` in this process with ``mini`` as every model; returns (code, stdout,
    stderr). ``cli.loads`` lists the models the command asked for (none: it loaded nothing)."""
    import contextlib
    import io

    import mmembed.cli
    from mmembed.models import registry

    loads = []

    def load(name, device=None, **options):  # options: e.g. page="reader" (mini's own)
        loads.append(name)
        return mini

    monkeypatch.setattr(registry, "load", load)

    def run(*args: object) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = mmembed.cli.main([str(arg) for arg in args])
        return code, out.getvalue(), err.getvalue()

    run.loads = loads
    return run
