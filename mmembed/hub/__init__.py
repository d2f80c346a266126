"""Weights as data: typed sources, a checksummed download cache and an offline mode.

No torch model is imported here; builders in ``mmembed.models`` call :func:`resolve` and
:func:`load_state_dict`.
"""

from .cache import sha256_file
from .env import is_offline, library_version, mmembed_home
from .errors import (
    DownloadError,
    MissingWeightsError,
    OfflineError,
    WeightsError,
    WeightsFormatError,
)
from .resolve import resolve
from .sources import HubSource, LocalSource, PackageSource, UrlSource, WeightSource
from .state_dict import load_state_dict

__all__ = [
    "DownloadError",
    "HubSource",
    "LocalSource",
    "MissingWeightsError",
    "OfflineError",
    "PackageSource",
    "UrlSource",
    "WeightSource",
    "WeightsError",
    "WeightsFormatError",
    "is_offline",
    "library_version",
    "load_state_dict",
    "mmembed_home",
    "resolve",
    "sha256_file",
]
