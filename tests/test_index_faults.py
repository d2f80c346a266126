"""Fault injection: every file of an index folder x five faults.

For each case ``mmembed search`` must either return the clean index's top 5 or fail with
one line naming the damaged file and the fix (never exit 0 with other results), and a plain
rerun of ``mmembed index`` must restore the clean top 5, re-embedding nothing that was intact.

Small indexes (4 notes, 2 photos) of three structures (flat: vectors.npy only; HNSW:
vectors.faiss; binary: codes.faiss) are built once. The files whose checksums a plain search
skips above 64 MiB are damaged a second time with that threshold at 0 ("large"). The matrix
drives ``mmembed.cli.main`` in-process with mmembed-mini loaded once; a few cases also run
as real processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

import mmembed.cli
from mmembed.models import registry
from mmembed.retrieval import integrity

REPO = Path(__file__).resolve().parents[1]
QUERIES = ("a cat", "baking bread at home")
NOTES = {
    "bread.txt": "Knead the dough, let it rise overnight and bake the bread at 230 degrees.",
    "planets.txt": "Jupiter and Saturn are gas giants; Mars is a small rocky planet.",
    "tides.md": "# Tides\nThe moon's gravity pulls the oceans, giving two high tides a day.",
    "chess.txt": "The Sicilian Defence answers 1.e4 with c5 and fights for the centre.",
}
PHOTOS = {"astronaut.png": data.astronaut, "cat.jpg": data.chelsea}
KINDS = ("flat", "hnsw", "binary")
GENERATION = "gen-000001"
FILES = {
    "flat": [
        ".lock",
        "current.json",
        f"{GENERATION}/info.json",
        f"{GENERATION}/meta.sqlite",
        f"{GENERATION}/vectors.npy",
        "query_encoder.json",  # the ONNX query export's pointer: damaged, search uses torch
    ],
}
FILES["hnsw"] = [*FILES["flat"], f"{GENERATION}/vectors.faiss"]
FILES["binary"] = [*FILES["flat"], f"{GENERATION}/codes.faiss"]
FAULTS = ("truncate-0", "truncate-half", "overwrite-middle", "overwrite-header", "delete")
# "small": checksums compared on every open (files under integrity.SMALL_FILE); "large": as
# for an index above it, where a plain search checks sizes, headers and vectors only.
LARGE = (f"{GENERATION}/meta.sqlite", f"{GENERATION}/vectors.npy")  # the files that differ
CASES = [
    ("small", kind, name, fault) for kind in KINDS for name in FILES[kind] for fault in FAULTS
] + [("large", kind, name, fault) for kind in KINDS for name in LARGE for fault in FAULTS]
CASE_IDS = [
    f"case{number:03d}of{len(CASES)}-{size}-{kind}-{name.split('/')[-1]}-{fault}"
    for number, (size, kind, name, fault) in enumerate(CASES, 1)
]
MAIN = "import sys; from mmembed.cli import main; sys.exit(main())"
OUTCOMES: Counter = Counter()  # tallied for the summary test at the end


def inject(path: Path, fault: str) -> None:
    """Damage ``path`` the way a disk, a kill or a careless hand does."""
    size = path.stat().st_size
    if fault == "delete":
        path.unlink()
    elif fault.startswith("truncate"):
        os.truncate(path, 0 if fault == "truncate-0" else size // 2)
    else:
        start = 0 if fault == "overwrite-header" else max(0, size // 2 - 128)
        with open(path, "r+b") as handle:
            handle.seek(start)
            handle.write(bytes((7 * i + 131) % 256 for i in range(min(256, size - start))))


@pytest.fixture(scope="module")
def cli(mini, one_torch_thread):
    """Run ``mmembed ARGS`` in-process with mmembed-mini; returns (code, stdout, stderr)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(registry, "load", lambda name, device=None: mini)

    def run(*args: object) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = mmembed.cli.main([str(arg) for arg in args])
        return code, out.getvalue(), err.getvalue()

    yield run
    patch.undo()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "corpus"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    for name, picture in PHOTOS.items():
        Image.fromarray(picture()).resize((128, 128)).save(folder / name)
    return folder


def top5(cli, index_dir: Path, *extra: str) -> tuple[int, list[list[str]] | None, str]:
    """Exit code, the top-5 ids of every query (None on failure) and stderr."""
    found = []
    for query in QUERIES:
        code, out, err = cli("search", index_dir, query, "--top-k", 5, "--json", *extra)
        if code != 0:
            return code, None, err
        found.append([hit["id"] for hit in json.loads(out)])
    return 0, found, ""


@pytest.fixture(scope="module")
def clean(cli, corpus, tmp_path_factory) -> dict[str, tuple[Path, list[list[str]]]]:
    """Per structure: a clean index folder and its top 5 for each query."""
    built = {}
    for kind in KINDS:
        index_dir = tmp_path_factory.mktemp(kind) / "index"
        code, out, err = cli("index", corpus, "--out", index_dir, "--index-type", kind)
        assert code == 0, err
        code, found, err = top5(cli, index_dir)
        assert code == 0 and len(found[0]) == 5, err
        files = sorted(
            str(path.relative_to(index_dir)) for path in index_dir.rglob("*") if path.is_file()
        )
        assert files == sorted(FILES[kind]), "a file of the index is missing from the matrix"
        built[kind] = (index_dir, found)
    assert built["flat"][1][0][0].endswith("cat.jpg")
    return built


@pytest.mark.parametrize(("size", "kind", "name", "fault"), CASES, ids=CASE_IDS)
def test_fault(cli, corpus, clean, tmp_path, monkeypatch, size, kind, name, fault):
    source, expected = clean[kind]
    index_dir = tmp_path / "index"
    shutil.copytree(source, index_dir)
    inject(index_dir / name, fault)

    with monkeypatch.context() as patch:
        if size == "large":
            patch.setattr(integrity, "SMALL_FILE", 0)
        code, found, err = top5(cli, index_dir)
    if code == 0:
        assert found == expected, "search answered wrongly in silence"
        OUTCOMES["clean results"] += 1
        OUTCOMES[f"{size} clean results"] += 1
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("mmembed search: index ") and name in lines[0], err
        assert "mmembed index --repair --out" in lines[0], err
        OUTCOMES["clear errors"] += 1
        OUTCOMES[f"{size} clear errors"] += 1

    code, out, err = cli("index", corpus, "--out", index_dir)
    assert code == 0, err
    embedded = int(out.split("embedded ")[1].split(",")[0])
    if Path(name).name not in ("vectors.npy", "meta.sqlite"):
        assert embedded == 0, f"re-embedded intact items: {out}"
    code, found, err = top5(cli, index_dir, "--verify")
    assert code == 0 and found == expected, err
    OUTCOMES["repaired by rerun"] += 1
    OUTCOMES["re-embedded items"] += embedded


def test_fault_matrix_counts():
    """Runs after the matrix (file order): every case ended as clean or as a clear error."""
    cases = OUTCOMES["clean results"] + OUTCOMES["clear errors"]
    if OUTCOMES["repaired by rerun"] < len(CASES):
        pytest.skip(f"{OUTCOMES['repaired by rerun']} of {len(CASES)} cases passed in this run")
    print(
        f"\nfault matrix: {cases} cases, {OUTCOMES['clean results']} clean results, "
        f"{OUTCOMES['clear errors']} clear errors, {OUTCOMES['repaired by rerun']} repaired "
        f"by rerun ({OUTCOMES['re-embedded items']} items re-embedded in all); of them "
        f"{len(CASES) - len(LARGE) * len(KINDS) * len(FAULTS)} with checksums on open "
        f"({OUTCOMES['small clean results']} clean, {OUTCOMES['small clear errors']} errors) "
        f"and {len(LARGE) * len(KINDS) * len(FAULTS)} as above 64 MiB "
        f"({OUTCOMES['large clean results']} clean, {OUTCOMES['large clear errors']} errors)"
    )
    assert cases == OUTCOMES["repaired by rerun"] == len(CASES)


def _process(*args: object, stdin=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", MAIN, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("current.json", "truncate-half"),
        (f"{GENERATION}/vectors.npy", "truncate-half"),
        (f"{GENERATION}/info.json", "delete"),
    ],
)
def test_real_process_fails_in_one_line(clean, tmp_path, name, fault):
    index_dir = tmp_path / "index"
    shutil.copytree(clean["flat"][0], index_dir)
    inject(index_dir / name, fault)
    result = _process("search", index_dir, "a cat")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert name in result.stderr and "mmembed index --repair" in result.stderr
