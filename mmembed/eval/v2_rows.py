"""Strict reading of MMEB-V2's own data files: one ``V2Row`` per row, whose accessors check each
field's shape, so a malformed row is an error naming the dataset, the file, the row and the
field (``--skip-bad-items`` leaves it out, counted as a miss), never a silently wrong string.

Also the prompt builder every V2 reader shares: ``process_input_text`` of VLM2Vec-V2
(TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d4, ``src/model/processor.py`` lines 650-673) for the
Qwen2-VL backbone (VLM2Vec-V2.0's).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import DataError

IMAGE = "<|image_1|>"
VIDEO = "<|video_pad|>"


class RowError(DataError):
    """A field of one row has the wrong shape; the message names dataset, file, row and field."""


def v2_text(instruction: str, text: str = "", video: bool = False, image: bool = False) -> str:
    """``process_input_text`` (``src/model/processor.py`` lines 650-673) for Qwen2-VL."""
    prompt = instruction + (" " + text if text else "")
    if video:
        prompt = VIDEO + " " + prompt
    if image:
        prompt = IMAGE + " " + prompt
    return prompt


@dataclass(frozen=True)
class V2Row:
    """One row of a V2 file and where it came from."""

    fields: dict[str, Any]  # the row as stored
    dataset: str  # the registered name, for messages
    path: Path  # the file it was read from
    number: int  # 0-based row number within its file

    def error(self, field: str, reason: str) -> RowError:
        """The error for a wrong field of this row."""
        return RowError(
            f"{self.dataset}: {self.path}: row {self.number}: field {field!r}: {reason}"
        )

    def get(self, field: str) -> Any:
        """A field's value, which must be present (any shape).

        Raises:
            DataError: the column is missing (never skipped: the whole file has the wrong layout).
        """
        if field not in self.fields:
            raise DataError(
                f"{self.dataset}: {self.path}: row {self.number}: missing required column "
                f"{field!r}; the row has {sorted(self.fields)}"
            )
        return self.fields[field]

    def text(self, field: str) -> str:
        """A string field."""
        value = self.get(field)
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {_kind(value)}")
        return value

    def ident(self, field: str) -> str:
        """An id that names a file or folder: a string or an integer, as V2 formats it with
        ``f"{value}"``."""
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(field, f"expected an id (string or integer), got {_kind(value)}")
        if value == "":
            raise self.error(field, "an empty id")
        return str(value)

    def index(self, field: str) -> int:
        """An integer index (stored as an integer or a string of digits, which V2 turns into
        an int)."""
        value = self.get(field)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, f"expected an integer index, got {_kind(value)}")
        return value

    def number_value(self, field: str) -> float:
        """A number (a relevance grade)."""
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, f"expected a number, got {_kind(value)}")
        return float(value)

    def texts(self, field: str) -> list[str]:
        """A non-empty list of strings."""
        value = self.get(field)
        if isinstance(value, str):
            raise self.error(field, "a string where a list (one entry per candidate) belongs")
        if not isinstance(value, (list, tuple)):
            raise self.error(field, f"expected a list of strings, got {_kind(value)}")
        if not value:
            raise self.error(field, "an empty list")
        for position, entry in enumerate(value):
            if not isinstance(entry, str):
                raise self.error(field, f"entry {position} is {_kind(entry)}, not a string")
        return list(value)

    def records(self, field: str, key: str) -> list[str]:
        """``entry[key]`` of each dict in a list field (MomentSeeker's clip lists); may be empty."""
        value = self.get(field)
        if not isinstance(value, (list, tuple)):
            raise self.error(field, f"expected a list of objects, got {_kind(value)}")
        found = []
        for position, entry in enumerate(value):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
                raise self.error(field, f"entry {position} has no string {key!r}")
            found.append(entry[key])
        return found


def read_rows(files: list[Path], dataset: str) -> Iterator[V2Row]:
    """The rows of parquet/jsonl files, in file order."""
    for path in files:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for number, fields in enumerate(pq.read_table(path).to_pylist()):
                yield V2Row(fields, dataset, path, number)
            continue
        with open(path, encoding="utf-8") as handle:
            number = 0
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    fields = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{dataset}: {path}: line {line_number}: {error}") from None
                if not isinstance(fields, dict):
                    raise DataError(f"{dataset}: {path}: line {line_number}: not a JSON object")
                yield V2Row(fields, dataset, path, number)
                number += 1


def has_mmeb_columns(path: Path) -> bool:
    """Whether a data file is in the MMEB row format (some ``qry_*`` column) rather than in a
    V2 parser's own columns; a file named ``test-*.parquet`` can be either."""
    names: Any
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "{}")
        try:
            names = json.loads(first)
        except json.JSONDecodeError:
            return True  # let the MMEB reader name the bad line
        if not isinstance(names, dict):
            return True
    return any(column in names for column in ("qry_text", "qry_img_path", "qry_video_path"))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
