"""The README's shell blocks run as written (``scripts/check_readme.py``).

Run here, on every test run: the newcomer's first block (install, index ``assets/``, search by
text and by image, write the HTML page) and the "Search your files" block after it, in a fresh
copy of the repository, with the packages of the running environment (nothing to download)
but mmembed installed by the block's own ``pip install -e .``. They take about a minute.

Run by the script only (``python scripts/check_readme.py [--slow]``), because of their cost:
the training loop (``pip install -e ".[train]"``, a training run, MMEB, index and search: about
a minute more, and ``tests/test_train_e2e.py`` runs the same commands in-process), the test
suite itself and the recipes (``--slow``). Never run here, with the reason the script prints
(``--list``): the server and its curl commands (``tests/test_serve_readme.py`` runs those
against a live server), the MMEB download (network), the pixel-tower trainings (root, hours,
a GPU) and the ``mmembed train CONFIG`` synopsis.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("check_readme", REPO / "scripts/check_readme.py")
check_readme = importlib.util.module_from_spec(SPEC)
sys.modules["check_readme"] = check_readme  # its dataclass looks itself up there
SPEC.loader.exec_module(check_readme)

BLOCKS = check_readme.shell_blocks((REPO / "README.md").read_text(encoding="utf-8"))
# the blocks this test runs, by how they start (their numbers move as the README grows)
IN_THE_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e .",
    "mmembed index assets",
)


def test_every_skip_names_a_block_and_the_newcomer_blocks_run_by_default():
    reasons = {**check_readme.SLOW, **check_readme.NOT_HERE}
    for start in reasons:  # a stale skip (its block gone) would go unnoticed
        assert any(block.first.startswith(start) for block in BLOCKS), start
    for start in IN_THE_TEST:
        assert sum(block.first.startswith(start) for block in BLOCKS) == 1, start
    runs_by_default = [block.first for block in BLOCKS if block.skip_reason(slow=False) is None]
    assert runs_by_default[0].startswith(IN_THE_TEST[0])  # the first thing a newcomer runs
    assert any(first.startswith('pip install -e ".[train]"') for first in runs_by_default)


def test_commands_are_split_as_a_shell_reads_them():
    readme = (
        "```bash\nmmembed a \\\n  --b\nfor m in x y; do\n  echo $m\ndone\n# note\n```\n"
        "```console\n$ mmembed c\noutput\n$ mmembed d \\\n  --e\n```\n```python\nx = 1\n```\n"
    )
    first, second = check_readme.shell_blocks(readme)
    assert [command for _, command in first.commands] == [
        "mmembed a \\\n  --b",
        "for m in x y; do\n  echo $m\ndone",
    ]
    assert [line for line, _ in first.commands] == [2, 4]
    assert [command for _, command in second.commands] == ["mmembed c", "mmembed d \\\n  --e"]


def test_a_failing_command_in_a_chain_stops_the_session(tmp_path):
    block = check_readme.Block(1, 5, "", [(6, "false && true"), (7, "echo after")])
    script = tmp_path / "session.sh"
    script.write_text(check_readme.session([block]))
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "after" not in done.stdout
    assert "FAILED: README block 1 (README.md line 6) exited with status 1" in done.stderr


def test_the_newcomer_blocks_run_verbatim_in_a_fresh_copy():
    numbers = [
        str(block.number)
        for block in BLOCKS
        if any(block.first.startswith(start) for start in IN_THE_TEST)
    ]
    argv = ["--deps-from", sys.prefix, "--blocks", *numbers]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_readme.py"), *argv],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "check_readme: every block ran" in done.stdout
    assert "17 items in runs/assets-index" in done.stdout
    assert "wrote runs/results.html" in done.stdout
