"""Errors that name the input item at fault, so one bad file never hides behind a torch traceback."""

from __future__ import annotations


class InputError(ValueError):
    """An input item could not be embedded.

    Attributes:
        index: position of the item in the list given to ``encode`` (None when unknown).
        reason: what was wrong, in words a user can act on.
    """

    def __init__(self, reason: str, index: int | None = None):
        self.index = index
        self.reason = reason
        where = f"item {index}: " if index is not None else ""
        super().__init__(where + reason)

    def at(self, index: int) -> InputError:
        """The same error, placed at ``index`` of the caller's list."""
        return InputError(self.reason, index)


class MissingDependencyError(ImportError):
    """A program or package that an option needs is not installed; the message says how."""
