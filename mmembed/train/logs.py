"""Training metrics: one JSON line per logged step, and TensorBoard scalars when installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..hub.atomic import write_atomic

logger = logging.getLogger(__name__)


class MetricLog:
    """Appends ``{"step": ..., name: value, ...}`` lines to ``metrics.jsonl`` in ``folder``.

    Only the main process should create one. ``tensorboard=True`` also writes event files
    when the ``tensorboard`` package is importable, and is quietly skipped (with one info
    message) when it is not, since it is an optional extra.
    """

    def __init__(self, folder: str | Path, tensorboard: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metrics.jsonl"
        self._stream = open(self.path, "a", encoding="utf-8")
        self._writer = _tensorboard_writer(self.folder / "tensorboard") if tensorboard else None

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Write one line (flushed, so a killed run keeps everything logged so far)."""
        record = {"step": step, **values}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        self._stream.close()
        if self._writer is not None:
            self._writer.close()


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop lines logged after ``last_step``, the step a resumed run restarts from.

    A killed run may have logged steps past its last checkpoint; the resumed run logs them
    again, so without this the file would hold those steps twice.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s: dropping a partly written line", path)
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    text = "".join(line + "\n" for line in kept)
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("tensorboard is not installed; logging to metrics.jsonl only")
        return None
    return SummaryWriter(log_dir=str(folder))
