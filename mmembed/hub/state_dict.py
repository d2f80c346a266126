"""Read a checkpoint into tensors without ever unpickling arbitrary Python objects."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MissingWeightsError, WeightsFormatError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_TORCH_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt"})
# Training scripts often wrap the weights one level deep under one of these keys.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or torch checkpoint, loaded on the CPU.

    Torch files are read with ``weights_only=True``, so a checkpoint that needs custom classes
    is refused instead of executing code from a downloaded file.

    Raises:
        MissingWeightsError: the file does not exist.
        WeightsFormatError: unknown format, unreadable file, or objects other than tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsFormatError(f"{path} is a directory; pass the weights file inside it.")
    if not path.is_file():
        raise MissingWeightsError(f"Weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        loaded = _load_safetensors(path)
    elif suffix in _TORCH_SUFFIXES:
        loaded = _load_torch(path)
    else:
        raise WeightsFormatError(
            f"Cannot read {path}: unknown weights format {suffix!r} "
            f"(supported: .safetensors, {', '.join(sorted(_TORCH_SUFFIXES))})."
        )
    return _as_tensor_dict(loaded, path)


def _load_safetensors(path: Path) -> object:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise WeightsFormatError(f"Could not read {path} as safetensors: {err}") from err


def _load_torch(path: Path) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsFormatError(
            f"Refused to load {path}: it holds Python objects other than tensors, and mmembed "
            "only loads checkpoints with torch.load(weights_only=True). Convert it to "
            ".safetensors in an environment you trust."
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise WeightsFormatError(f"Could not read {path} as a torch checkpoint: {err}") from err


def _as_tensor_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Check the checkpoint is a flat name -> tensor mapping, unwrapping one common wrapper."""
    if _is_tensor_dict(loaded):
        return dict(loaded)
    if isinstance(loaded, dict):
        for key in _WRAPPER_KEYS:
            if _is_tensor_dict(loaded.get(key)):
                logger.debug("Using the %r entry of %s", key, path)
                return dict(loaded[key])
    raise WeightsFormatError(
        f"{path} is not a state dict: expected a mapping of parameter names to tensors."
    )


def _is_tensor_dict(value: object) -> bool:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )
