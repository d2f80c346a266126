"""Environment switches: where the cache lives and whether the network may be used."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

_TRUE = frozenset({"1", "true", "yes", "on"})


def mmembed_home() -> Path:
    """The root of mmembed's cache: ``$MMEMBED_HOME``, else ``~/.cache/mmembed``.

    Always an absolute path, so weights never land in whatever directory a script runs from.
    """
    value = os.environ.get("MMEMBED_HOME", "").strip()
    home = Path(value).expanduser() if value else Path.home() / ".cache" / "mmembed"
    return home.absolute()


def is_offline() -> bool:
    """True when ``MMEMBED_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1 (or true/yes/on)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("MMEMBED_OFFLINE", "HF_HUB_OFFLINE")
    )


def library_version() -> str:
    """mmembed's version, for the User-Agent and the Hub's library label."""
    try:
        return metadata.version("mmembed")
    except metadata.PackageNotFoundError:
        # Running from a source checkout that is not pip-installed.
        return getattr(sys.modules.get("mmembed"), "__version__", "0+unknown")


def user_agent() -> str:
    """The User-Agent sent with every download, so servers can see who is asking."""
    return f"mmembed/{library_version()}"
