"""Terminal output that cannot be hijacked by file names and survives a closed pipe."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from ..retrieval.names import shown as safe  # one escaping rule for terminal and pages

__all__ = ["quiet_broken_pipe", "safe"]


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
