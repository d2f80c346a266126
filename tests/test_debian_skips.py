"""Tests needing a Debian package skip naming it; under CI=true such a skip fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import debian

TESTS = Path(__file__).parent
INNER = """
import debian

debian.PROBES["fonts-mmembed-absent"] = "/nonexistent/mmembed-absent-*.ttf"


@debian.needs("fonts-mmembed-absent")
def test_inner_needs_an_absent_package():
    raise AssertionError("a test whose package is absent must not run")
"""


def _run_inner(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    """pytest on one test that needs an absent package, beside this suite's conftest."""
    for name in ("conftest.py", "debian.py"):
        shutil.copy(TESTS / name, folder / name)
    (folder / "test_inner.py").write_text(INNER)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "test_inner.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_debian_skip_names_the_package_and_fails_only_under_ci(tmp_path):
    local = _run_inner(tmp_path, None)
    assert local.returncode == 0, local.stdout[-2000:]
    assert "1 skipped" in local.stdout
    assert "needs Debian packages: fonts-mmembed-absent" in local.stdout
    assert "apt-get install fonts-mmembed-absent" in local.stdout
    ci = _run_inner(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "CI=true: tests skipped for missing Debian packages" in ci.stdout
    assert "test_inner_needs_an_absent_package: needs Debian packages" in ci.stdout


def test_every_package_ci_installs_has_a_probe():
    """The packages .ci/run installs are the ones tests/debian.py can name."""
    script = (TESTS.parent / ".ci" / "run").read_text()
    listed = script.split('PAGE_PACKAGES="', 1)[1].split('"', 1)[0].split()
    assert set(listed) <= set(debian.PROBES)
    assert set(debian.TRAINING_FONTS + debian.HELD_OUT_FONTS + debian.CORPORA) <= set(listed)
