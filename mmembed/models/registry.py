"""Named models, the timm way: zoo entries (typed configs) and small registered builders.

``mmembed.load`` resolves, in order: a zoo name (``mmembed-mini``, ``ViT-B-32.openai``, see
``models.zoo``), a name registered with ``register_model``, an ``open_clip:ARCH[/TAG]`` name,
a directory written by ``Embedder.save`` or a sentence-transformers / transformers checkpoint
directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..embedder import Embedder
from . import zoo

logger = logging.getLogger(__name__)

_BUILDERS: dict[str, Callable[[], Embedder]] = {}


def register_model(name: str) -> Callable[[Callable[[], Embedder]], Callable[[], Embedder]]:
    """Register a builder under ``name`` (the decorated function's docstring describes it)."""

    def decorate(builder: Callable[[], Embedder]) -> Callable[[], Embedder]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names ``mmembed.load`` accepts besides ``open_clip:`` names and local directories."""
    _import_builders()
    return sorted(set(_BUILDERS) | {entry.name for entry in zoo.list_pretrained()})


def describe_models() -> list[tuple[str, str]]:
    """(name, one-line description) of every named model."""
    _import_builders()
    described = {entry.name: entry.description for entry in zoo.list_pretrained()}
    for name, builder in _BUILDERS.items():
        described[name] = (builder.__doc__ or "").strip().splitlines()[0]
    return sorted(described.items())


def load(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    runtime: str | None = None,
    **options: Any,
) -> Embedder:
    """Build the named model (or read a local checkpoint) and move it to ``device``.

    Args:
        name_or_path: a registered name, ``open_clip:ARCH[/TAG]`` or a model directory.
        device: "cpu" (default), "cuda", ...
        precision: "fp32" (exact) or "bf16" (bf16 tower weights: faster on GPUs and on CPUs
            with AVX512-BF16 or AMX; vectors keep cosine >= 0.999 to fp32, see benchmarks/).
        **options: settings of a zoo model's builder, saved with it; mmembed-mini takes
            ``page="reader"`` (default: the shipped line reader reads pages), ``page="ocr"``
            (Tesseract reads them) or ``page="pixel"`` (the pixel tower).
        runtime: what runs the towers inside ``encode`` on CPU (``encoders.runtime``): "auto"
            (default: fp32 ONNX Runtime, torch's vectors within 1e-5), "onnx-int8",
            "openvino", "openvino-int8" (checked against fp32 here; one-line error if the
            package is missing or the check fails) or "torch". Saved with the model; None
            keeps the saved one.
    """
    from ..encoders.runtime import RUNTIMES

    if runtime is not None and runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    _import_builders()
    name = str(name_or_path)
    entry = zoo.get_pretrained(name)
    if entry is None and options:
        raise ValueError(f"{name}: options {sorted(options)} are for zoo models only")
    if entry is not None:
        from .builders import build_pretrained

        embedder = build_pretrained(entry, precision, **options)
    elif name in _BUILDERS:
        embedder = _BUILDERS[name]()
    elif name.startswith("open_clip:"):
        from .builders import open_clip_embedder

        embedder = open_clip_embedder(name)
    elif Path(name).is_dir() and (Path(name) / "mmembed_config.json").is_file():
        from .save import load_saved

        embedder = load_saved(Path(name))
    elif Path(name).is_dir():
        from .builders import local_embedder
        from .save import check_run_folder

        check_run_folder(Path(name))
        embedder = local_embedder(Path(name))
    else:
        raise ValueError(
            f"unknown model {name!r}: use one of {list_models()}, 'open_clip:ARCH[/TAG]' "
            "or a local model directory"
        )
    embedder = embedder.to(device or "cpu")
    if precision != "fp32":
        embedder.set_precision(precision)
    if runtime is None and embedder.cfg.runtime == "auto":
        return embedder  # towers keep their own (saved) settings
    return embedder.set_runtime(runtime or embedder.cfg.runtime)


def _import_builders() -> None:
    from . import builders  # noqa: F401  (registers the named models)
