"""A digest of a text tower, the key of everything computed from it once and cached.

ConSE's class-name embeddings and the ONNX export of a query tower are cached under
``$MMEMBED_HOME`` by this digest, so new weights, a new tokenizer or another pooling never
reuse a stale result.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn


def tower_digest(text: nn.Module) -> str:
    """sha256 over the tower's class, weights and buffers, tokenizer, pooling and window."""
    digest = hashlib.sha256(type(text).__qualname__.encode())
    for name, tensor in sorted(text.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    backend = getattr(getattr(text, "tokenizer", None), "backend_tokenizer", None)
    if backend is not None:
        # Without the padding / truncation state, which each tokenizer call sets anew.
        settings = json.loads(backend.to_str())
        settings.pop("padding", None)
        settings.pop("truncation", None)
        digest.update(json.dumps(settings, sort_keys=True).encode())
    for attribute in ("pooling", "max_tokens"):
        digest.update(repr(getattr(text, attribute, None)).encode())
    return digest.hexdigest()
