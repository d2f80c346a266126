"""Recipe tasks, registered by name (built-in ones are imported when a config names them)."""

from __future__ import annotations

from .base import BUILTIN_TASKS, TASKS, NoOptions, Task, TowerBatch, build_task, register_task

__all__ = [
    "BUILTIN_TASKS",
    "NoOptions",
    "TASKS",
    "Task",
    "TowerBatch",
    "build_task",
    "register_task",
]
