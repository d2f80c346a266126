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


def weights_key(module: nn.Module) -> tuple:
    """Changes whenever a weight is replaced or updated in place (optimiser step, load)."""
    return tuple((t.data_ptr(), t._version) for t in module.state_dict(keep_vars=True).values())


def tower_digest(text: nn.Module) -> str:
    """sha256 over the tower's class, weights and buffers, tokenizer, pooling and window.

    Remembered on the tower until its weights, tokenizer size, pooling or window change:
    hashing MiniLM's 90 MB takes ~0.13 s, and loading mmembed-mini and its first ``encode``
    both need the digest (ConSE's cache, the ONNX export).
    """
    key = (
        weights_key(text),
        len(tokenizer) if hasattr(tokenizer := getattr(text, "tokenizer", None), "__len__") else 0,
        getattr(text, "pooling", None),
        getattr(text, "max_tokens", None),
    )
    memo = text.__dict__.get("_digest_memo")
    if memo is not None and memo[0] == key:
        return memo[1]
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
    text.__dict__["_digest_memo"] = (key, digest.hexdigest())
    return digest.hexdigest()
