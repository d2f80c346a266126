"""Checkpoints that survive being killed mid-write and resume a run exactly.

A checkpoint holds the model, optimizer and scheduler states, the step, the data-loader
position and every process's RNG states. It is written to a temporary file in the same
folder, flushed to disk, then renamed over the final name, so a reader only ever sees
complete files.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hub.atomic import write_atomic

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d+)\.pt$")


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Every RNG this process draws from, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.copy()),
            "position": position,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Put back the RNG states :func:`capture_rng` recorded."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy(),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` atomically (``hub.atomic.write_atomic``: fsync, then rename)."""
    path = Path(path)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as stream:
            torch.save(payload, stream)

    write_atomic(path, write)
    logger.info("saved checkpoint %s", path)


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent checkpoints."""
    for path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; ``load_state_dict`` moves tensors where they belong."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    logger.info("loaded checkpoint %s (step %d)", path, payload["step"])
    return payload
