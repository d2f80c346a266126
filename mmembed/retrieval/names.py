"""File names and texts kept whole, whatever their bytes: stored losslessly, shown escaped.

POSIX file names are bytes; ``os.fsdecode`` turns each byte that is not UTF-8 into a lone
surrogate (``caf\\xe9.png`` -> ``"caf\\udce9.png"``), and manifests can hold lone surrogates too.
Such a str round-trips through JSON (``json`` writes ``\\udce9``), but SQLite refuses it, and a
terminal or an HTML page cannot print it. So:

- ``to_sql``/``from_sql``: a str that is not valid UTF-8 is stored as a BLOB of its
  ``surrogatepass`` bytes, and read back as the same str (valid text stays TEXT, so older
  indexes read unchanged);
- ``shown``: the one escaped form people see: a byte of a file name as ``\\xe9``, any other
  character that cannot be shown (controls, newlines, lone surrogates) as its Python escape.
"""

from __future__ import annotations

import unicodedata
from typing import Any


def to_sql(value: Any) -> Any:
    """``value`` as SQLite can hold it without loss (see module docstring)."""
    if isinstance(value, str) and not _is_utf8(value):
        return value.encode("utf-8", "surrogatepass")
    return value


def from_sql(value: Any) -> Any:
    """The str ``to_sql`` stored (values of text columns only)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogatepass")
    return value


def shown(text: str) -> str:
    """``text`` escaped for a terminal or a page: control characters (``\\x1b``, ``\\n``...) and
    undecodable bytes (``\\xe9``) escaped, so a name can neither fake output nor break it."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else _escape(char)
        for char in text
    )


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1] if code < 0x10000 else f"\\U{code:08x}"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
