"""Environment switches: where the cache lives and whether the network may be used."""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata
from pathlib import Path

_TRUE = frozenset({"1", "true", "yes", "on"})
logger = logging.getLogger(__name__)


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


def respect_omp_thread_limit() -> int | None:
    """Lower torch's thread count to ``OMP_THREAD_LIMIT`` when that is set below it; return
    the limit (None when unset).

    Why: with OpenMP granting fewer threads than torch plans for, torch 2.14 on CPU leaves
    parts of some reductions undone: a convolution's weight gradient came out 30% short
    (``scripts/omp_thread_limit.py``) and a tiny CLIP's first gradient norm inf
    (``tests/test_train_e2e.py``). Tesseract users commonly set ``OMP_THREAD_LIMIT=1``, and
    subprocesses inherit it.
    """
    value = os.environ.get("OMP_THREAD_LIMIT", "").strip()
    if not value.isdigit() or int(value) < 1:
        return None
    limit = int(value)
    import torch

    if torch.get_num_threads() > limit:
        logger.warning(
            "OMP_THREAD_LIMIT=%d is below torch's %d threads: running torch on %d (with more, "
            "torch computes wrong gradients on CPU)",
            limit,
            torch.get_num_threads(),
            limit,
        )
        torch.set_num_threads(limit)
    return limit
