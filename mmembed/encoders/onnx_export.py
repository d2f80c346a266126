"""One way to export a module to ONNX: trace, check against torch, publish into the cache.

Every export mmembed makes (the text tower, open_clip's image tower, the ConSE tower, the page
reader's line model) goes through :func:`export_checked`:

1. ``torch.onnx.export`` traces the module on sample inputs into a staging folder next to the
   destination (outside ``inference_mode``, which the tracer cannot see through);
2. the graph runs in ONNX Runtime on *check* inputs (other shapes than the trace's, so a shape
   the tracer froze is caught) and its outputs are compared with torch's: the largest absolute
   difference must be within ``atol`` (on unit rows when ``unit=True``), or it raises and the
   export is never published;
3. the folder's config JSON is written and every file is sealed with its checksum
   (``hub.verified``), then the staging folder is renamed into place (``hub.atomic``).

:func:`cached` is the matching read: the folder is used only when every file matches its
checksum and the config names the same digest and layout version.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import verified
from ..hub.atomic import staged_folder

OPSET = 17
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportSpec:
    inputs: tuple[str, ...]  # ONNX input names, in the order the module takes them
    outputs: tuple[str, ...] = ("embedding",)  # ONNX output names; the first one is checked
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)  # name -> {axis: label}
    atol: float = 1e-5  # largest |ONNX - torch| allowed on the check inputs
    unit: bool = True  # compare L2-normalised rows (embeddings) instead of raw outputs
    grad: bool = False  # trace with gradients on (nn.MultiheadAttention's fused path has no export)
    opset: int = OPSET


def export_checked(
    module: Any,
    sample: Sequence[Any],
    check: Sequence[Any],
    folder: Path,
    spec: ExportSpec,
    config: dict[str, Any],
    config_name: str,
    extra: Callable[[Path], None] | None = None,
    tracing: AbstractContextManager | None = None,
) -> Path:
    """Export ``module`` to ``folder/model.onnx``, checked against torch, and publish it.

    Args:
        module: an ``nn.Module`` in eval mode taking ``len(spec.inputs)`` tensors.
        sample: tensors to trace with.
        check: tensors to compare torch and ONNX Runtime on (other batch / length than sample).
        folder: the cache folder; replaced whole, atomically.
        spec: names, dynamic axes and tolerance.
        config: written as ``config_name`` (JSON); should hold the module's digest.
        extra: writes further files into the staging folder (a tokenizer), sealed with the rest.
        tracing: entered only while tracing (a switch to exportable attention); the check
            then compares with the module as it runs outside it.

    Raises:
        ValueError: the export's outputs differ from torch's by more than ``spec.atol``.
    """
    import torch

    with staged_folder(folder) as staging:
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad() if spec.grad else torch.no_grad())
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it keeps dynamic
            stack.enter_context(tracing if tracing is not None else nullcontext())
            # Clones made here are normal tensors, even when the caller runs in inference mode.
            torch.onnx.export(
                module,
                tuple(t.clone() for t in sample),
                str(staging / MODEL_FILE),
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_axes=spec.dynamic_axes,
                opset_version=spec.opset,
                dynamo=False,
            )
        diff = max_diff_to_torch(module, staging / MODEL_FILE, check, spec)
        if not diff <= spec.atol:
            raise ValueError(f"the ONNX export differs from torch by {diff:.1e} (> {spec.atol})")
        if extra is not None:
            extra(staging)
        (staging / config_name).write_text(json.dumps(config, indent=2) + "\n")
        verified.publish_folder(staging)
    return folder


def max_diff_to_torch(
    module: Any, model_file: Path, check: Sequence[Any], spec: ExportSpec
) -> float:
    """Largest |ONNX Runtime - torch| over the first output on ``check`` (inf on a shape change)."""
    import torch

    from .engines import ort_session

    with torch.inference_mode(False), torch.no_grad():
        tensors = [t.clone() for t in check]
        expected = module(*tensors)
    expected = expected[0] if isinstance(expected, (tuple, list)) else expected
    feeds = {name: t.cpu().numpy() for name, t in zip(spec.inputs, tensors, strict=True)}
    got = ort_session(model_file, 1).run([spec.outputs[0]], feeds)[0]
    want = expected.float().cpu().numpy()
    if spec.unit:
        got, want = _unit(got), _unit(want)
    return float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")


def cached(folder: Path, config_name: str, digest: str, version: int) -> dict[str, Any] | None:
    """The export's config when ``folder`` holds an intact export of ``digest`` in layout
    ``version``; None otherwise (a damaged folder is warned about and deleted by ``verified``)."""
    if not verified.intact_folder(folder, (config_name, MODEL_FILE)):
        return None
    try:
        raw = json.loads((folder / config_name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("digest") != digest:
        return None
    if raw.get("version", version) != version:
        return None
    return raw


def cache_folder(home: Path, digest: str) -> Path:
    """Where a module's export is cached: ``home/onnx/<digest prefix>``, one per digest."""
    return home / "onnx" / digest[:32]


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
