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

    def __reduce__(self):
        """Pickles (to and from worker processes) keep the reason and the index apart."""
        return (InputError, (self.reason, self.index))

    def at(self, index: int) -> InputError:
        """The same error, placed at ``index`` of the caller's list."""
        return InputError(self.reason, index)


class UsageError(ValueError):
    """A command-line argument or API option that cannot work, caught before anything loads."""


class CorruptIndexError(RuntimeError):
    """A file of an index is missing or damaged; the message names it and the fix.

    Attributes:
        index_dir: the index folder.
        file: the damaged file, relative to ``index_dir``.
        problem: what is wrong with it.
    """

    def __init__(self, index_dir: str, file: str, problem: str):
        self.index_dir = index_dir
        self.file = file
        self.problem = problem
        super().__init__(
            f"index {index_dir}: {file} {problem}; repair it with "
            f"`mmembed index --repair --out {index_dir}` (or rerun your `mmembed index` command)"
        )


class MissingDependencyError(ImportError):
    """A program or package that an option needs is not installed; the message says how."""


class StoreError(RuntimeError):
    """A vector engine holding an index failed or refused (unreachable, a wrong collection, a
    rejected write); the message is one line naming the engine's URI and the cause."""


class TrainingDivergedError(RuntimeError):
    """A training step gave a non-finite loss or gradient; the message names the step and the
    parts at fault, so a run stops there instead of saving NaN weights as its model."""
