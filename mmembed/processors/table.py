"""Tables: load them with a size limit, and linearise them to Markdown text chunks.

Text encoders read tables best as Markdown (header, separator, one line per row), but they
see a few hundred tokens at most. So a table is cut to ``TableLimits``: long cells are
shortened, extra rows and columns are dropped with an explicit note, and the rows are split
into chunks that each repeat the header, so every chunk can be read on its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .limits import MAX_CELLS
from .text import check_unicode

logger = logging.getLogger(__name__)

_ELLIPSIS = "…"
_NOTE_WORST = "(table truncated: showing 999999999 of 999999999 rows, 999999 of 999999 columns)"


@dataclass(frozen=True)
class TableLimits:
    """How much of a table goes into its Markdown text, and how it is chunked."""

    max_rows: int = 50  # data rows kept; the rest are dropped and counted in the note
    max_cols: int = 20  # columns kept, from the left; the rest are counted in the note
    max_chars: int = 2000  # longest chunk, header and note included (about 500 tokens)
    max_cell_chars: int = 40  # longest cell or column name; longer ones end with "…"

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_cols", "max_chars", "max_cell_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"TableLimits.{name} must be >= 1, got {getattr(self, name)}")

    def worst_chunk_chars(self) -> int:
        """Length of the longest possible first chunk: note, header, separator, one row.

        When this is <= ``max_chars`` (true of the defaults), any table fits the limits.
        """
        row = 1 + self.max_cols * (self.max_cell_chars + 3)  # "| cell " per column, then "|"
        separator = 1 + self.max_cols * 6  # "| --- " per column, then "|"
        return len(_NOTE_WORST) + 2 * row + separator + 3  # three newlines


DEFAULT_LIMITS = TableLimits()


# ---- loading -------------------------------------------------------------------------------


def load_table(source: Any) -> pd.DataFrame:
    """Load a table and refuse empty or oversized ones before any model sees them.

    Args:
        source: a ``pandas.DataFrame``, a CSV/TSV/Parquet path, a list of row dicts, or an
            ``mmembed.Table`` wrapping one of these.

    Raises:
        InputError: the file is missing, unreadable or of an unknown type, the table is
            empty, or it has more than ``MAX_CELLS`` cells.
    """
    from ..inputs import Table

    if isinstance(source, Table):
        source = source.source
    if isinstance(source, pd.DataFrame):
        df = source
    elif isinstance(source, (str, os.PathLike)):
        df = _load_file(Path(source))
    elif isinstance(source, (list, tuple)):
        df = _from_records(source)
    else:
        raise InputError(
            f"unsupported table source {type(source).__name__}; use a DataFrame, "
            "a CSV/TSV/Parquet path or a list of dicts"
        )
    _check_size(df.shape[0], df.shape[1], "table")
    return df


def _check_not_empty(num_rows: int, num_cols: int, what: str) -> None:
    if num_rows == 0 or num_cols == 0:
        raise InputError(f"{what} is empty ({num_rows} rows x {num_cols} columns)")


def _check_size(num_rows: int, num_cols: int, what: str, at_least: bool = False) -> None:
    """Raise if the table is empty or has more than ``MAX_CELLS`` cells."""
    _check_not_empty(num_rows, num_cols, what)
    if num_rows * num_cols > MAX_CELLS:
        more = "more than " if at_least else ""
        raise InputError(
            f"{what} has {more}{num_rows} rows x {num_cols} columns = {more}"
            f"{num_rows * num_cols} cells, above the limit of MAX_CELLS={MAX_CELLS}; "
            "embed a slice of it"
        )


def _load_file(path: Path) -> pd.DataFrame:
    name = repr(str(path))
    if not path.is_file():
        raise InputError(f"table file {name} does not exist or is not a file")
    suffix = path.suffix.lower()
    readers = {".csv": _read_delimited, ".tsv": _read_delimited, ".parquet": _read_parquet}
    if suffix not in readers:
        raise InputError(f"table file {name} has unknown type {suffix!r}; use .csv/.tsv/.parquet")
    try:
        return readers[suffix](path)
    except InputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        # ValueError covers pandas' EmptyDataError and pyarrow's ArrowInvalid.
        reason = "is empty" if isinstance(error, pd.errors.EmptyDataError) else "is unreadable"
        detail = " ".join(str(error).split())  # pandas' parser messages end in a newline
        raise InputError(f"table file {name} {reason}: {detail}") from error


def _read_delimited(path: Path) -> pd.DataFrame:
    """Read at most ``MAX_CELLS`` cells' worth of rows, so a huge file fails fast."""
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    header = pd.read_csv(path, sep=sep, nrows=0)
    num_cols = len(header.columns)
    _check_size(1, num_cols, f"table file {str(path)!r}", at_least=True)
    row_budget = MAX_CELLS // num_cols
    df = pd.read_csv(path, sep=sep, nrows=row_budget + 1)
    _check_size(len(df), num_cols, f"table file {str(path)!r}", at_least=len(df) > row_budget)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    """Check the size from the Parquet footer before reading any data."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    _check_size(metadata.num_rows, metadata.num_columns, f"table file {str(path)!r}")
    return pd.read_parquet(path)


def _from_records(rows: Sequence[Any]) -> pd.DataFrame:
    if not all(isinstance(row, Mapping) for row in rows):
        raise InputError("a table given as a list must hold only dicts (one per row)")
    columns = dict.fromkeys(key for row in rows for key in row)  # ordered union of keys
    for value in [*columns, *(v for row in rows for v in row.values())]:
        if isinstance(value, str):  # pandas' Arrow strings would raise a bare UnicodeEncodeError
            check_unicode(value, "table cell")
    _check_size(len(rows), len(columns), "table")
    return pd.DataFrame.from_records(list(rows), columns=list(columns))


# ---- Markdown ------------------------------------------------------------------------------


def table_to_markdown_chunks(
    df: pd.DataFrame,
    max_rows: int = DEFAULT_LIMITS.max_rows,
    max_cols: int = DEFAULT_LIMITS.max_cols,
    max_chars: int = DEFAULT_LIMITS.max_chars,
    max_cell_chars: int = DEFAULT_LIMITS.max_cell_chars,
) -> list[str]:
    """Linearise a table to Markdown chunks, each no longer than ``max_chars``.

    Every chunk starts with the header row and separator so it reads on its own. When rows
    or columns are dropped, the first chunk starts with a note such as
    ``(table truncated: showing 50 of 1200 rows, 20 of 31 columns)``.

    Args:
        df: the table; a named (non-default) index becomes the first column.
        max_rows: see ``TableLimits``.
        max_cols: see ``TableLimits``.
        max_chars: see ``TableLimits``.
        max_cell_chars: see ``TableLimits``.

    Raises:
        InputError: the table is empty.
        ValueError: the limits cannot fit one row in a chunk.
    """
    limits = TableLimits(max_rows, max_cols, max_chars, max_cell_chars)
    df = _with_index(df)
    _check_not_empty(df.shape[0], df.shape[1], "table")
    shown = df.iloc[: limits.max_rows, : limits.max_cols]
    header = _header_lines(shown.columns, limits.max_cell_chars)
    rows = [_row_line(values, limits.max_cell_chars) for values in shown.itertuples(index=False)]
    note = _truncation_note(df.shape, shown.shape)
    _check_fits(rows, header, note, limits)
    return _pack(rows, header, note, limits.max_chars)


def _with_index(df: pd.DataFrame) -> pd.DataFrame:
    """Keep a meaningful index (named or non-integer) as a column; drop a plain row counter."""
    if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
        return df
    return df.reset_index()


def _header_lines(columns: pd.Index, max_cell_chars: int) -> str:
    names = [format_cell(name, max_cell_chars) for name in columns]
    return "| " + " | ".join(names) + " |\n" + "|" + " --- |" * len(names)


def _row_line(values: Sequence[Any], max_cell_chars: int) -> str:
    return "| " + " | ".join(format_cell(value, max_cell_chars) for value in values) + " |"


def format_cell(value: Any, max_chars: int) -> str:
    """One cell as Markdown-safe text: no newlines, pipes escaped, at most ``max_chars``.

    Missing values (None, NaN, NaT, pd.NA) become empty cells rather than "nan".
    """
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, NaT, pd.NA
        return ""
    text = check_unicode(" ".join(str(value).split()), "table cell").replace("|", "\\|")
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rstrip()
    if cut.endswith("\\"):  # never split an escaped pipe
        cut = cut[:-1]
    return cut + _ELLIPSIS


def _truncation_note(full: tuple[int, int], shown: tuple[int, int]) -> str | None:
    parts = []
    if shown[0] < full[0]:
        parts.append(f"{shown[0]} of {full[0]} rows")
    if shown[1] < full[1]:
        parts.append(f"{shown[1]} of {full[1]} columns")
    return f"(table truncated: showing {', '.join(parts)})" if parts else None


def _check_fits(rows: list[str], header: str, note: str | None, limits: TableLimits) -> None:
    """Refuse limits under which some row cannot share a chunk with the header."""
    needed = len(header) + 1 + max(len(row) for row in rows)
    needed += len(note) + 1 if note else 0
    if needed > limits.max_chars:
        raise ValueError(
            f"max_chars={limits.max_chars} cannot hold this table's header and longest row "
            f"({needed} chars); raise max_chars or lower max_cols / max_cell_chars"
        )


def _pack(rows: list[str], header: str, note: str | None, max_chars: int) -> list[str]:
    """Fill chunks greedily with whole rows, each chunk opening with the header."""
    chunks: list[str] = []
    current = f"{note}\n{header}" if note else header
    count = 0
    for row in rows:
        if count and len(current) + 1 + len(row) > max_chars:
            chunks.append(current)
            current, count = header, 0
        current += "\n" + row
        count += 1
    chunks.append(current)
    return chunks
