"""What a recipe supplies: towers, which tower embeds which side, and batches.

A recipe is a YAML config plus a small :class:`Task` subclass registered under a name. The
trainer is generic: it only needs ``build_towers``, ``sides``, ``build_dataset`` and
``collate``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import InputError
from ..config import TrainConfig, from_dict
from ..data import PairDataset, Sample, open_dataset

logger = logging.getLogger(__name__)

SIDES = ("query", "positive", "negative")


@dataclass
class TowerBatch:
    """One process's share of a global batch, ready for the towers."""

    inputs: dict[str, Any]  # side -> tower inputs (a tensor or dict of tensors; first dim = items)
    size: int  # query-positive pairs kept
    skipped: int = 0  # samples dropped because they could not be read

    def to(self, device: torch.device) -> TowerBatch:
        return dataclasses.replace(self, inputs=_to(self.inputs, device))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to(v, device) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to(v, device) for v in value)
    return value


@dataclass
class NoOptions:
    """For tasks without options."""


class Task(ABC):
    """Base class of recipe tasks.

    Subclasses set ``Options`` (a dataclass typing ``task_options`` in the config) and
    ``sides``, and implement ``build_towers`` and ``prepare``. ``collate`` drops samples whose
    ``prepare`` raises :class:`InputError` and counts them, so a bad file never ends a run.
    """

    Options: ClassVar[type] = NoOptions
    sides: ClassVar[Mapping[str, str]] = {}  # batch side -> tower name, e.g. {"query": "image"}

    def __init__(self, options: Any, config: TrainConfig):
        self.options = options
        self.config = config

    @abstractmethod
    def build_towers(self) -> nn.ModuleDict:
        """The towers, by name; each maps one side's inputs to embeddings ``(B, D)``."""

    @abstractmethod
    def prepare(self, sample: Sample) -> dict[str, Any]:
        """Tower inputs of one sample: side -> one item's input (``negative``: a list of them).

        Raises:
            InputError: when the sample cannot be used (unreadable image, missing text...).
        """

    def build_dataset(self) -> PairDataset:
        """The training pairs; by default those ``config.data`` names."""
        return open_dataset(self.config.data)

    def collate(self, samples: list[Sample]) -> TowerBatch:
        """Prepare samples, skipping (and counting) unreadable ones, then stack them."""
        prepared = []
        for sample in samples:
            try:
                prepared.append(self.prepare(sample))
            except InputError as error:
                logger.warning("skipping training sample %d: %s", sample.index, error.reason)
        return TowerBatch(
            self.stack(prepared), size=len(prepared), skipped=len(samples) - len(prepared)
        )

    def stack(self, prepared: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack per-sample inputs into per-side batches (negatives flattened in sample order)."""
        if not prepared:
            return {}
        batch = {}
        for side in prepared[0]:
            items: list[Tensor] = []
            for one in prepared:
                value = one[side]
                items.extend(value if isinstance(value, list | tuple) else [value])
            if items:
                batch[side] = torch.stack(items)  # (B, ...) or (B * K, ...) for negatives
        return batch

    def enable_gradient_checkpointing(self, towers: nn.ModuleDict) -> None:
        """Turn on activation recomputation, through the towers' own hooks (open_clip, HF)."""
        for name, tower in towers.items():
            for hook in ("set_grad_checkpointing", "gradient_checkpointing_enable"):
                if hasattr(tower, hook):
                    getattr(tower, hook)()
                    break
            else:
                raise ValueError(
                    f"tower {name!r} has no gradient checkpointing hook; override this"
                )


TASKS: dict[str, type[Task]] = {}

# Built-in recipes by name, imported on first use so that importing mmembed.train stays light.
BUILTIN_TASKS = {"tiny_clip": "mmembed.train.tasks.tiny_clip"}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a task available as ``task: <name>`` in configs."""

    def register(cls: type[Task]) -> type[Task]:
        if name in TASKS:
            raise ValueError(f"task {name!r} is already registered by {TASKS[name].__name__}")
        TASKS[name] = cls
        return cls

    return register


def build_task(config: TrainConfig) -> Task:
    """The task a config names (registered name or ``module:Class``), with typed options."""
    if ":" in config.task:
        module, _, attribute = config.task.partition(":")
        cls = getattr(importlib.import_module(module), attribute)
    else:
        if config.task not in TASKS and config.task in BUILTIN_TASKS:
            importlib.import_module(BUILTIN_TASKS[config.task])
        if config.task not in TASKS:
            known = sorted(set(TASKS) | set(BUILTIN_TASKS))
            raise ValueError(f"unknown task {config.task!r}; registered: {known}")
        cls = TASKS[config.task]
    unknown_sides = set(cls.sides) - set(SIDES)
    if unknown_sides:
        raise ValueError(f"{cls.__name__}.sides has unknown side(s) {sorted(unknown_sides)}")
    return cls(from_dict(cls.Options, config.task_options, "task_options"), config)


__all__ = ["NoOptions", "TASKS", "Task", "TowerBatch", "build_task", "register_task"]
