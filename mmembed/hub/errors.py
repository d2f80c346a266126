"""Errors raised while making weights available, each saying what to do next."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """Weights could not be made available; catch this to handle every hub failure at once."""


class DownloadError(WeightsError):
    """A download failed or its bytes did not match the pinned checksum."""


class OfflineError(WeightsError):
    """Offline mode is on and the weights are not in the cache."""


class MissingWeightsError(WeightsError):
    """A local path or an installed package that should hold the weights is absent."""


class WeightsFormatError(WeightsError):
    """A weights file is in a format we do not read, or would need unsafe unpickling."""
