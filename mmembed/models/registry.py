"""Named models, the timm way: zoo entries (typed configs) built by their family.

``mmembed.load`` resolves, in order: a zoo name (``mmembed-mini``, ``ViT-B-32.openai``, see
``models.zoo``), an ``open_clip:ARCH[/TAG]`` name, a directory written by ``Embedder.save`` or
a sentence-transformers / transformers checkpoint directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..embedder import Embedder
from ..hub.env import respect_omp_thread_limit
from . import zoo

logger = logging.getLogger(__name__)


def list_models() -> list[str]:
    """Names ``mmembed.load`` accepts besides ``open_clip:`` names and local directories."""
    return [entry.name for entry in zoo.list_pretrained()]


def describe_models() -> list[tuple[str, str]]:
    """(name, one-line description) of every named model."""
    return [(entry.name, entry.description) for entry in zoo.list_pretrained()]


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

    respect_omp_thread_limit()
    if runtime is not None and runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    name = str(name_or_path)
    entry = zoo.get_pretrained(name)
    if entry is None and options:
        raise ValueError(f"{name}: options {sorted(options)} are for zoo models only")
    if entry is not None:
        embedder = build_pretrained(entry, precision, **options)
    elif name.startswith("open_clip:"):
        from .families.open_clip import build_named

        embedder = build_named(name)
    elif Path(name).is_dir() and (Path(name) / "mmembed_config.json").is_file():
        from .save import load_saved

        embedder = load_saved(Path(name))
    elif Path(name).is_dir():
        from .save import check_run_folder

        check_run_folder(Path(name))
        embedder = local_embedder(Path(name))
    elif name in zoo.UNSUPPORTED:
        raise ValueError(f"{name}: {zoo.UNSUPPORTED[name]}")
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


def build_pretrained(entry: zoo.PretrainedCfg, precision: str = "fp32", **options: Any) -> Embedder:
    """The ``Embedder`` of a zoo entry, by its family, downloading weights if needed (and allowed).

    Raises:
        ValueError: an option the entry's family does not take.
    """
    from .family import family_of

    family = family_of(entry.builder)
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        raise ValueError(f"{entry.name} takes no option {unknown}; it takes {list(family.options)}")
    return family.build(entry, precision, **options)


def local_embedder(path: Path) -> Embedder:
    """A transformers checkpoint folder: a VLM of a known family, else a text model."""
    from .families import hf_text, vlm

    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model directory (no config.json)")
    return vlm.from_folder(path) if vlm.is_vlm_folder(path) else hf_text.from_folder(path)
