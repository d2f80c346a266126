"""Terminal output that cannot be hijacked by file names and survives a closed pipe."""

from __future__ import annotations

import contextlib
import os
import sys
import unicodedata
from collections.abc import Iterator


def safe(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\n``...), so a file name cannot
    move the cursor, recolour the terminal or fake extra lines of output."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else _escape(char)
        for char in text
    )


def _escape(char: str) -> str:
    return repr(char)[1:-1] if ord(char) < 0x10000 else f"\\U{ord(char):08x}"


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """End quietly when the reader of stdout goes away (``mmembed search ... | head``).

    stdout is pointed at /dev/null so that the interpreter's final flush does not fail too.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
