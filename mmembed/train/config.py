"""Typed training config: dataclasses with a comment per field, converted from YAML once.

A recipe is a YAML file naming a registered task plus the sections below; unknown keys are
errors so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PRECISIONS = ("fp32", "bf16")
TINY = "tiny"  # ``init: tiny``: the small random open_clip model described by TinyClipCfg
# task name -> the module that registers it (imported on first use; torch-free to read, so
# ``mmembed train`` refuses an unknown task before torch loads)
BUILTIN_TASKS = {
    "tiny_clip": "mmembed.train.tasks.tiny_clip",
    "clip_realign": "mmembed.train.tasks.clip_realign",
    "pixel_text": "mmembed.train.tasks.pixel_text",
    "video_curriculum": "mmembed.train.tasks.video_curriculum",
    "instruction_tuning": "mmembed.train.tasks.instruction_tuning",
    "instruction_tuning_vlm": "mmembed.train.tasks.instruction_tuning_vlm",
}
_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


@dataclass
class DataConfig:
    format: str = "image_caption"  # a reader in data.READERS: "mmeb", "image_caption", "demo_*"...
    path: str = ""  # table (CSV/TSV/Parquet/JSONL) or, for image_caption, a folder of images + .txt
    image_root: str | None = None  # resolves relative image paths (default: the table's folder)
    image_column: str = "image"  # image_caption tables: column with the image path
    caption_column: str = "caption"  # image_caption tables: column with the caption
    query_column: str = "query"  # text_pairs: column with the query text
    positive_column: str = "positive"  # text_pairs: column with the matching text
    negative_column: str | None = None  # text_pairs: column with a hard-negative text (optional)
    num_negatives: int = 0  # hard negatives per query; rows with fewer are skipped
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)


@dataclass
class LossConfig:
    temperature: float = 0.07  # softmax temperature at the start (or throughout, when fixed)
    learn_temperature: bool = True  # learn log(1/temperature), clamped like CLIP
    max_logit_scale: float = 100.0  # upper clamp on 1/temperature (CLIP uses 100)
    symmetric: bool = True  # add the document-to-query direction to the query-to-document one
    matryoshka_dims: list[int] = field(default_factory=list)  # prefix dims; empty: full dim only
    matryoshka_weights: list[float] = field(default_factory=list)  # per dim; empty: all 1


@dataclass
class OptimConfig:
    lr: float = 5e-4  # peak learning rate of AdamW, reached after warmup
    weight_decay: float = 0.1  # AdamW decay, applied to matrices only (not biases, norms, scales)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW moment decay rates
    eps: float = 1e-6  # AdamW denominator epsilon
    warmup_steps: int = 0  # linear warmup from 0 to lr over these steps
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at the last step
    max_grad_norm: float | None = None  # clip the global gradient norm (None: no clipping)


@dataclass
class TrainConfig:
    task: str  # registered task name ("tiny_clip") or "package.module:TaskClass"
    output_dir: str  # checkpoints, metrics.jsonl, TensorBoard events and the final towers go here
    task_options: dict[str, Any] = field(default_factory=dict)  # typed by the task's Options class
    data: DataConfig = field(default_factory=DataConfig)  # where the training pairs come from
    loss: LossConfig = field(default_factory=LossConfig)  # contrastive loss settings
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer and schedule
    steps: int = 100  # optimizer steps to train for
    batch_size: int = 32  # global batch (all processes together); the contrastive pool size
    chunk_size: int | None = None  # GradCache chunk per process (None: embed the batch at once)
    seed: int = 0  # seeds model init, data order, augmentations and dropout
    precision: str = "fp32"  # "fp32" or "bf16" (autocast of tower forwards; loss stays fp32)
    gradient_checkpointing: bool = False  # recompute tower activations in backward to save memory
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes to freeze
    # The model the recipe starts from and trains: a zoo name (mmembed-mini,
    # ViT-B-32.laion2b_s34b_b79k), open_clip:ARCH[/TAG], a saved folder such as an earlier
    # run's final/, or "tiny" (the small random open_clip model); None: the task's default.
    init: str | None = None
    device: str = "auto"  # "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu", "cuda"
    save_every: int = 100  # write a checkpoint every this many steps (and at the end)
    keep_checkpoints: int = 2  # how many recent checkpoints to keep on disk
    log_every: int = 1  # write a metrics line every this many steps
    progress_bar: bool = True  # show a tqdm bar with loss and samples/s (main process only)
    tensorboard: bool = True  # also write TensorBoard scalars when tensorboard is installed

    def validate(self) -> None:
        """Fail before any work starts, naming the field at fault."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("steps", "batch_size", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or null, got {self.chunk_size}")
        weights, dims = self.loss.matryoshka_weights, self.loss.matryoshka_dims
        if weights and len(weights) != len(dims):
            raise ValueError("loss.matryoshka_weights needs one weight per matryoshka dim")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, recursing into nested dataclass fields.

    Raises:
        ValueError: on a key that ``cls`` has no field for, naming the valid ones.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} in {where or cls.__name__}; valid: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        if not _matches(value, hints[name]):
            raise ValueError(f"{path}: expected {_type_name(hints[name])}, got {value!r}")
        nested = _dataclass_type(hints[name])
        if nested is not None and isinstance(value, dict):
            value = from_dict(nested, value, path)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"{where or cls.__name__}: {error}") from error


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML recipe into a validated :class:`TrainConfig`.

    Args:
        path: the recipe.
        overrides: ``KEY=VALUE`` strings (``--set``): a dotted key (``optim.lr``,
            ``task_options.stage``) and a YAML value (``20``, ``true``, ``[1, 2]``, ``null``).
    """
    with open(path, encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    for override in overrides:
        apply_override(raw, override)
    config = from_dict(TrainConfig, raw)
    config.validate()
    return config


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set one ``KEY=VALUE`` in a raw config dict (types are checked when it is converted)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {override!r}: expected KEY=VALUE, e.g. steps=20")
    value = yaml.safe_load(text) if text else ""
    if isinstance(value, str) and _EXPONENT.match(value):  # YAML 1.1 reads 1e-4 as a string
        value = float(value)
    *parents, last = key.split(".")
    target = raw
    for name in parents:
        child = target.setdefault(name, {})
        if child is None:
            child = target[name] = {}
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {name} is not a section")
        target = child
    target[last] = value


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's type hint (an int is a float; bool is not an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict | hint)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value if args)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _dataclass_type(hint: Any) -> type | None:
    """The dataclass in ``hint`` (also inside ``X | None``), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None
