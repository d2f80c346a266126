"""Table loading limits and Markdown chunking, on the shipped planets table."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmembed.errors import InputError
from mmembed.inputs import Table
from mmembed.processors.table import (
    MAX_CELLS,
    TableLimits,
    load_table,
    table_to_markdown_chunks,
)

PLANETS = Path(__file__).resolve().parent.parent / "assets" / "tables" / "planets.csv"
HEADER = "| planet | type | diameter_km | mass_1e24_kg | distance_from_sun_1e6_km |"


@pytest.fixture(scope="module")
def planets() -> pd.DataFrame:
    return load_table(PLANETS)


def test_load_csv(planets):
    assert planets.shape == (8, 7)
    assert planets.loc[2, "planet"] == "Earth" and planets.loc[2, "moons"] == 1


def test_every_source_kind_gives_the_same_table(planets, tmp_path):
    planets.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    planets.to_parquet(tmp_path / "p.parquet", index=False)
    sources = [
        planets,
        str(PLANETS),
        tmp_path / "p.tsv",
        tmp_path / "p.parquet",
        planets.to_dict("records"),
        Table(PLANETS),
    ]
    for source in sources:
        loaded = load_table(source)
        assert list(loaded.columns) == list(planets.columns)
        assert loaded["planet"].tolist() == planets["planet"].tolist()


def test_records_with_uneven_keys():
    df = load_table([{"a": 1}, {"b": 2, "a": 3}])
    assert list(df.columns) == ["a", "b"] and df.shape == (2, 2)


def test_huge_dataframe_fails_fast_with_the_limit():
    big = pd.DataFrame(np.zeros((1000, 1000), dtype=np.float32))
    start = time.perf_counter()
    with pytest.raises(InputError, match=f"MAX_CELLS={MAX_CELLS}"):
        load_table(big)
    assert time.perf_counter() - start < 0.5


def test_huge_csv_fails_without_reading_it_all(tmp_path):
    path = tmp_path / "big.csv"
    line = ",".join(["1"] * 1000) + "\n"
    path.write_text(",".join(f"c{i}" for i in range(1000)) + "\n" + line * 1000)
    start = time.perf_counter()
    with pytest.raises(InputError, match="above the limit") as caught:
        load_table(path)
    assert time.perf_counter() - start < 2.0
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)  # one line, in a log or a terminal


def test_huge_record_list_fails_before_building_a_frame():
    rows = [{"a": 1, "b": 2}] * (MAX_CELLS // 2 + 1)
    with pytest.raises(InputError, match="MAX_CELLS"):
        load_table(rows)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.csv", None, "does not exist"),
        ("empty.csv", "", "is empty"),
        ("header_only.csv", "a,b,c\n", "is empty"),
        ("binary.csv", b"\xff\xfe\x00\x81" * 50, "unreadable"),
        ("broken.parquet", "not parquet at all", "unreadable"),
        ("table.xlsx", "a,b\n1,2\n", "unknown type"),
        ("ragged.csv", "a,b\n1,2\n3,4,5,6\n", "unreadable"),
    ],
)
def test_bad_files_raise_input_error_naming_the_path(tmp_path, name, content, reason):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=reason) as caught:
        load_table(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("source", [pd.DataFrame(), [], [1, 2], 3.5])
def test_empty_or_unsupported_sources(source):
    with pytest.raises(InputError):
        load_table(source)


def test_small_table_is_one_chunk_without_note(planets):
    (chunk,) = table_to_markdown_chunks(planets)
    lines = chunk.splitlines()
    assert lines[0].startswith(HEADER)
    assert lines[1] == "|" + " --- |" * 7
    assert lines[2] == "| Mercury | terrestrial | 4879 | 0.33 | 57.9 | 88.0 | 0 |"
    assert len(lines) == 2 + 8 and "truncated" not in chunk


def test_header_on_every_chunk_and_size_bound():
    df = pd.DataFrame({"city": [f"town {i}" for i in range(300)], "people": range(300)})
    chunks = table_to_markdown_chunks(df, max_rows=300, max_chars=400)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(chunk) <= 400
        assert chunk.splitlines()[:2] == ["| city | people |", "| --- | --- |"]
    body = [line for chunk in chunks for line in chunk.splitlines()[2:]]
    assert body == [f"| town {i} | {i} |" for i in range(300)]  # every row once, in order


def test_truncation_note_counts_rows_and_columns():
    df = pd.DataFrame(np.arange(1200 * 31).reshape(1200, 31))
    chunks = table_to_markdown_chunks(df, max_rows=50, max_cols=20)
    assert (
        chunks[0].splitlines()[0] == "(table truncated: showing 50 of 1200 rows, 20 of 31 columns)"
    )
    assert sum(len(chunk.splitlines()) - 2 for chunk in chunks) == 50 + 1
    assert all(chunk.count("|") - chunk.count("\\|") <= 21 * 50 for chunk in chunks)


def test_cells_are_shortened_and_escaped():
    df = pd.DataFrame({"note": ["a|b", "line one\nline two", "x" * 100, None]})
    lines = table_to_markdown_chunks(df, max_cell_chars=10)[0].splitlines()[2:]
    assert lines == ["| a\\|b |", "| line one… |", "| xxxxxxxxx… |", "|  |"]


def test_named_index_is_kept_as_a_column(planets):
    chunk = table_to_markdown_chunks(planets.set_index("planet"))[0]
    assert chunk.startswith("| planet | type |")


def test_default_limits_fit_any_table():
    limits = TableLimits()
    assert limits.worst_chunk_chars() <= limits.max_chars
    wide = pd.DataFrame([["x" * 500] * 300] * 60, columns=["y" * 500] * 300)
    chunks = table_to_markdown_chunks(wide)
    assert all(len(chunk) <= limits.max_chars for chunk in chunks)
    assert sum(len(chunk.splitlines()) - 2 for chunk in chunks) == 50 + 1


def test_limits_that_cannot_hold_a_row_are_refused(planets):
    with pytest.raises(ValueError, match="max_chars=100 cannot hold"):
        table_to_markdown_chunks(planets, max_chars=100)
    with pytest.raises(ValueError, match="max_rows"):
        TableLimits(max_rows=0)
