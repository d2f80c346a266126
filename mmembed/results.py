"""The array ``encode`` returns: rows in input order, plus which rows failed and why."""

from __future__ import annotations

import numpy as np

from .errors import InputError


class Embeddings(np.ndarray):
    """A float32 ``(N, D)`` array with ``errors``: {row index: InputError} for skipped rows.

    Skipped rows (``on_error="skip"``) are NaN so they can never be mistaken for a vector.
    """

    errors: dict[int, InputError]

    def __new__(cls, array: np.ndarray, errors: dict[int, InputError] | None = None):
        result = np.asarray(array, dtype=np.float32).view(cls)
        result.errors = dict(errors or {})
        return result

    def __array_finalize__(self, obj):
        self.errors = getattr(obj, "errors", {})

    @property
    def failed(self) -> list[int]:
        """Indices of the rows that could not be embedded, in order."""
        return sorted(self.errors)
