"""Run the README's shell blocks, in order, in a fresh copy of the repository; stop at the first
command that fails and name it.

    python scripts/check_readme.py                 # every block that can run here
    python scripts/check_readme.py --slow          # also the minutes-long ones (test suite, recipes)
    python scripts/check_readme.py --list          # what would run, and why the others do not
    python scripts/check_readme.py --deps-from .venv --blocks 1 4   # reuse installed packages

A shell block is a ```bash block (every line) or a ```console block (its ``$ `` lines). All
blocks run in one bash session, as a reader pastes them into one terminal: a venv activated in
one block is active in the next. Each command's exit status is checked (a failing command in the
middle of an ``&&`` chain included). The copy holds the files a clone would (git's tracked and
untracked-but-not-ignored files), so a block can rely only on what the repository ships.

``--deps-from VENV`` makes the copy's ``.venv`` see VENV's installed packages (a ``.pth`` file)
and builds without an isolated build environment (VENV's setuptools): ``pip install -e .`` then
installs mmembed itself and downloads only what VENV lacks. Without it, the first block installs
everything from PyPI, as on a new machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Blocks that are not run by default, keyed by the start of their first command, with the reason.
SLOW = {
    'pip install -e ".[test]" && python -m pytest -q': "the whole test suite (.ci/run runs it in CI)",
    "mmembed train configs/tiny_clip.yaml && mmembed train configs/clip_realign_stage1.yaml": (
        "three training runs and nine evaluations (minutes)"
    ),
}
NOT_HERE = {
    "mmembed serve runs/assets-index": "starts a server that runs until stopped; "
    "tests/test_serve.py and tests/test_serve_readme.py start one",
    "curl -s http://127.0.0.1:8000/v1/embeddings": "needs the server of the block above; "
    "tests/test_serve_readme.py runs these commands against a live server and compares the JSON",
    "curl 'http://127.0.0.1:8000/api/search": "needs the server of the block above "
    "(tests/test_serve.py checks these routes)",
    "# With network access": "downloads MMEB-eval from the Hugging Face hub",
    "mmembed train CONFIG": "a synopsis: CONFIG, DIR, KEY=VALUE are placeholders; torchrun needs GPUs",
    "apt-get install wordnet-base": "installs a Debian package (root) and trains for 25 minutes",
    "mmembed train configs/pixel_text_fonts.yaml": "hours of CPU training, then a GPU machine",
}


@dataclass
class Block:
    number: int  # 1-based, in README order
    line: int  # README line of the opening fence
    text: str  # the block as written (a console block: its commands)
    commands: list[tuple[int, str]]  # (README line, logical command)

    @property
    def first(self) -> str:
        return self.text.strip().splitlines()[0] if self.text.strip() else ""

    def skip_reason(self, slow: bool) -> str | None:
        for table in (NOT_HERE,) if slow else (NOT_HERE, SLOW):
            for start, reason in table.items():
                if self.first.startswith(start):
                    return reason
        return None


def shell_blocks(readme: str) -> list[Block]:
    """The README's ```bash and ```console blocks, each split into logical commands."""
    lines = readme.splitlines()
    blocks: list[Block] = []
    number = 0
    fence = re.compile(r"^\s*```(\w*)\s*$")
    index = 0
    while index < len(lines):
        match = fence.match(lines[index])
        if not match:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        language = match.group(1)
        if language in ("bash", "console"):
            number += 1
            body = [(index + 2 + k, text) for k, text in enumerate(lines[index + 1 : end])]
            if language == "console":
                body = _console_commands(body)
            text = "\n".join(line for _, line in body)
            blocks.append(Block(number, index + 1, text, _logical(body)))
        index = end + 1
    return blocks


def _console_commands(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A console transcript's commands: ``$ `` lines and the continuation lines of each."""
    kept, going = [], False
    for line, text in body:
        if text.startswith("$ ") or going:
            kept.append((line, text[2:] if text.startswith("$ ") and not going else text))
            going = text.rstrip().endswith("\\")
    return kept


def _logical(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join continuation lines and ``for``/``while``/``if`` constructs into one command each."""
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    start, depth = 0, 0
    for line, text in body:
        if not pending and (not text.strip() or text.lstrip().startswith("#")):
            continue
        if not pending:
            start = line
        pending.append(text)
        words = re.findall(r"(?:^|[;\s])(for|while|until|if|done|fi)(?=[;\s]|$)", text)
        depth += sum(1 if w in ("for", "while", "until", "if") else -1 for w in words)
        if text.rstrip().endswith("\\") or depth > 0:
            continue
        commands.append((start, "\n".join(pending)))
        pending, depth = [], 0
    if pending:
        commands.append((start, "\n".join(pending)))
    return commands


def session(blocks: list[Block]) -> str:
    """One bash script running ``blocks`` in order, checking every command's exit status."""
    out = [
        "set -o pipefail",
        '__fail() { echo; echo "check_readme: FAILED: README block $1 (README.md line $2) '
        'exited with status $3: $4" >&2; exit 1; }',
    ]
    for block in blocks:
        out.append(f"echo; echo '=== README block {block.number} (README.md line {block.line})'")
        for line, command in block.commands:
            shown = command.replace("\n", " ")
            out.append(f"echo {shlex.quote('$ ' + shown)}")
            out.append(command)
            out.append(
                f"__status=$?; [ $__status -eq 0 ] || __fail {block.number} {line} "
                f"$__status {shlex.quote(shown[:200])}"
            )
    out.append("echo; echo 'check_readme: every block ran'")
    return "\n".join(out) + "\n"


def fresh_copy(target: Path) -> None:
    """The files a clone of this checkout would hold (and uncommitted edits to them)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def seed_venv(copy: Path, deps_from: Path) -> dict[str, str]:
    """A ``.venv`` in the copy that sees ``deps_from``'s packages, and pip's settings for it."""
    subprocess.run([sys.executable, "-m", "venv", str(copy / ".venv")], check=True)
    python = deps_from / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    version = sysconfig.get_python_version()
    own = copy / ".venv" / "lib" / f"python{version}" / "site-packages"
    (own / "readme-check-deps.pth").write_text(site + "\n")
    # the venv's bundled setuptools is older than the build needs; VENV's is used instead
    for name in os.listdir(own):
        if name.startswith(("setuptools", "pkg_resources", "_distutils_hack", "distutils-")):
            path = own / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation
    return {"PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--blocks", type=int, nargs="+", help="only these block numbers")
    parser.add_argument("--slow", action="store_true", help="also the minutes-long blocks")
    parser.add_argument("--list", action="store_true", help="list the blocks and exit")
    parser.add_argument("--deps-from", type=Path, help="a venv whose packages the copy reuses")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)
    blocks = shell_blocks(args.readme.read_text(encoding="utf-8"))
    chosen = []
    for block in blocks:
        reason = block.skip_reason(args.slow)
        wanted = args.blocks is None or block.number in args.blocks
        if args.list or not wanted or reason:
            state = "run" if wanted and not reason else f"not run: {reason or 'not chosen'}"
            print(f"block {block.number:2d} (line {block.line:4d}) {state}: {block.first[:60]}")
        if wanted and not reason:
            chosen.append(block)
    if args.list:
        return 0
    if args.blocks and {b.number for b in chosen} != set(args.blocks):
        print("check_readme: a chosen block is unknown or cannot run here (see --list)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="mmembed-readme-"))
    copy = work / "mmembed"
    try:
        fresh_copy(copy)
        env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
        env.pop("PYTHONPATH", None)  # the copy's own code, as a new user has it
        if args.deps_from is not None:
            env.update(seed_venv(copy, args.deps_from.resolve()))
        script = work / "session.sh"
        script.write_text(session(chosen))
        print(f"check_readme: {len(chosen)} blocks in {copy}", flush=True)
        return subprocess.run(["bash", str(script)], cwd=copy, env=env).returncode
    finally:
        if args.keep:
            print(f"check_readme: kept {copy}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
