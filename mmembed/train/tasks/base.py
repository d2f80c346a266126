"""What a recipe supplies: towers, which tower embeds which side, and batches.

A recipe is a YAML config plus a small :class:`Task` subclass registered under a name. A task
starts from the ``Embedder`` that ``config.init`` names (``build_model``), trains modules of
that very embedder (``build_towers``) and hands it back (``final_model``), which the trainer
saves as ``output_dir/final``. The trainer is generic: it only needs ``build_towers``,
``sides``, ``build_dataset`` and ``collate``. Optional hooks let a recipe do more without
touching the loop: ``on_step`` (a curriculum that reshapes the towers), ``evaluate`` (metrics
before and after training) and ``loss_parts`` (extra sides with their own loss terms).
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

from ...embedder import Embedder
from ...errors import InputError
from ..config import BUILTIN_TASKS, TrainConfig, from_dict
from ..data import PairDataset, Sample, open_dataset
from ..distributed import DistEnv, gather_pairs
from ..model import load_init

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
    default_init: ClassVar[str | None] = None  # the model when the config names no ``init``

    def __init__(self, options: Any, config: TrainConfig):
        self.options = options
        self.config = config
        self._model: Embedder | None = None

    @property
    def init(self) -> str:
        """The name or folder of the model this run starts from."""
        init = self.config.init or self.default_init
        if init is None:
            raise ValueError(f"{type(self).__name__} needs init: the model to start from")
        return init

    @property
    def model(self) -> Embedder:
        """The embedder being trained, built from ``init`` on first use."""
        if self._model is None:
            self._model = self.build_model()
        return self._model

    @model.setter
    def model(self, embedder: Embedder) -> None:
        self._model = embedder

    def build_model(self) -> Embedder:
        """The embedder ``init`` names; tasks adapt it (e.g. a temporal block, a head)."""
        return load_init(self.init)

    def final_model(self, towers: nn.ModuleDict) -> Embedder:
        """The trained embedder, which the trainer saves as ``output_dir/final``.

        The towers are modules of ``self.model``, so it holds the trained weights already;
        tasks that train a piece the embedder does not hold yet (a head, a page tower) put it
        in here.
        """
        return self.model

    @abstractmethod
    def build_towers(self) -> nn.ModuleDict:
        """Modules of ``self.model``, by name; each maps one side's inputs to ``(B, D)``."""

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

    def on_step(self, step: int, towers: nn.ModuleDict) -> None:
        """Adapt the towers before training step ``step`` (0-based); a curriculum's hook.

        Called when the trainer is built (step 0), before every step, and on resume with the
        last step the checkpoint trained, so the towers take the checkpoint's shapes. It may
        replace parameters (e.g. grow a position table): the trainer moves the optimizer onto
        the new ones. It must depend on ``step`` alone, so every process and every resume
        agrees. The default does nothing.
        """
        return None

    def evaluate(self, towers: nn.ModuleDict) -> dict[str, float]:
        """The recipe's own metrics, run before the first step and after the last.

        The trainer calls it on the main process without gradients and writes the results
        to ``output_dir/eval.json``; empty (the default) means there is nothing to report.
        """
        return {}

    def loss_parts(
        self, loss: nn.Module, embeddings: dict[str, Tensor], env: DistEnv
    ) -> dict[str, Tensor]:
        """Named loss parts of one batch from its side embeddings ``(B, D)`` each.

        The default is the config's contrastive loss over query, positive and hard
        negatives, gathered over processes. A task with extra sides (say a second positive)
        overrides it to add their terms; parts ending in ``_loss`` are summed.
        """
        pairs = gather_pairs(
            embeddings["query"], embeddings["positive"], embeddings.get("negative"), env
        )
        return loss(pairs)

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
# Built-in recipes by name (train.config.BUILTIN_TASKS) are imported on first use.


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
    task = cls(from_dict(cls.Options, config.task_options, "task_options"), config)
    _check_sides(task)
    return task


def _check_sides(task: Task) -> None:
    """Query and positive are required; other sides need a ``loss_parts`` that uses them."""
    name = type(task).__name__
    missing = {"query", "positive"} - set(task.sides)
    if missing:
        raise ValueError(f"{name}.sides lacks side(s) {sorted(missing)}")
    extra = set(task.sides) - set(SIDES)
    if extra and type(task).loss_parts is Task.loss_parts:
        raise ValueError(
            f"{name}.sides has side(s) {sorted(extra)} that only a loss_parts override can use"
        )


__all__ = ["NoOptions", "TASKS", "Task", "TowerBatch", "build_task", "register_task"]
