"""The served model: every vector the server makes comes from ``Embedder.encode`` here.

One ``Batcher`` thread owns the model (its towers' inference runtimes are not shared between
threads): ``/v1/embeddings`` requests and the search's torch queries are queued to it, and
requests of one instruction that arrive together share one ``encode`` call. Rows come back
unnormalised and each request applies its own ``dimensions`` with ``space.shared.truncate``,
the same function ``encode(dim=...)`` ends with, so a served vector is ``encode``'s vector.
"""

from __future__ import annotations

import base64
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..inputs import Input
from ..processors.plan import Planned
from ..space.shared import truncate
from .batcher import Batcher
from .config import ServeCfg
from .errors import ApiError
from .openai_request import EmbedRequest


@dataclass(frozen=True)
class Row:
    """One embedded item, as the batch returns it."""

    vector: torch.Tensor  # (D,) before normalisation
    tokens: int  # text-tower tokens the model read for this item


class EmbeddingService:
    """Queues items to the model and answers in OpenAI's shape.

    Args:
        embedder: the loaded ``Embedder``.
        cfg: batching (``max_batch``, ``max_wait_ms``) and limits.
    """

    def __init__(self, embedder: Any, cfg: ServeCfg):
        self.embedder, self.cfg = embedder, cfg
        self.batcher = Batcher(self._encode_batch, cfg.max_batch, cfg.max_wait_ms / 1000, "model")

    @property
    def model(self) -> str:
        return self.embedder.name

    def card(self) -> dict:
        """The served model as ``GET /v1/models`` lists it."""
        modalities = sorted(getattr(m, "value", str(m)) for m in self.embedder.modalities)
        return {
            "id": self.model,
            "object": "model",
            "created": 0,
            "owned_by": "mmembed",
            "dimensions": int(self.embedder.dim),
            "modalities": modalities,
        }

    def submit(self, request: EmbedRequest) -> Future:
        """A future of one ``Row`` or ``InputError`` per item of ``request``."""
        return self.batcher.submit(request.items, request.instruction)

    def response(self, request: EmbedRequest, results: list) -> dict:
        """OpenAI's embeddings response; ``ApiError`` naming the first item that failed."""
        for index, result in enumerate(results):
            if isinstance(result, InputError):
                raise ApiError(400, request.describe(result, index), f"input[{index}]")
        vectors = truncate(torch.stack([row.vector for row in results]), request.dimensions, True)
        vectors = vectors.numpy().astype("<f4", copy=False)
        tokens = sum(row.tokens for row in results)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encoded(v, request)}
                for i, v in enumerate(vectors)
            ],
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def vectors(self, items: list[Input], instruction: str | None, dim: int | None) -> np.ndarray:
        """Unit vectors ``(N, dim)`` as ``encode(items, instruction, dim=dim)`` gives them,
        computed by the batcher (blocks; for request threads)."""
        results = self.batcher.run(items, instruction)
        for index, result in enumerate(results):
            if isinstance(result, InputError):
                raise result.at(index)
        return truncate(torch.stack([row.vector for row in results]), dim, True).numpy()

    def close(self) -> None:
        self.batcher.close()

    def _encode_batch(self, items: list[Input], instruction: str | None) -> list:
        """The batch function: items planned once by the library's planner (the parts
        ``encode`` embeds, and the texts whose tokens are counted), then one ``encode`` call
        of the planned items; a failed item is its ``InputError``."""
        plan = self.embedder.planner(instruction)
        results: list = [None] * len(items)
        planned = {}
        for index, item in enumerate(items):
            try:
                planned[index] = plan(item)
            except InputError as error:
                results[index] = error
        if not planned:
            return results
        order = list(planned)
        embeddings = self.embedder.encode(
            [planned[i] for i in order],
            instruction=instruction,
            batch_size=self._batch_size([planned[i] for i in order]),
            normalize=False,
            show_progress_bar=False,
            convert_to="torch",
            on_error="skip",
        )
        tokens = self._token_counts([planned[i] for i in order])
        for row, index in enumerate(order):
            failed = embeddings.errors.get(row)
            results[index] = failed if failed is not None else Row(embeddings[row], tokens[row])
        return results

    def _batch_size(self, planned: list[Planned]) -> int:
        """Tower forward size: smaller when pixels are in the batch (see ``ServeCfg``)."""
        pixels = any(part.kind in PIXEL_KINDS for item in planned for part in item.parts)
        return self.cfg.pixel_batch_size if pixels else self.cfg.text_batch_size

    def _token_counts(self, planned: list[Planned]) -> list[int]:
        """Tokens of the text parts the text tower reads per item (0 without a text tower)."""
        tower = self.embedder.towers["text"] if "text" in self.embedder.towers else None
        texts = [[p.payload for p in item.parts if p.kind == "text"] for item in planned]
        flat = [text for item_texts in texts for text in item_texts]
        if tower is None or not hasattr(tower, "tokenize") or not flat:
            return [0] * len(planned)
        counts = tower.token_counts(tower.tokenize(flat)).tolist()
        out, start = [], 0
        for item_texts in texts:
            out.append(int(sum(counts[start : start + len(item_texts)])))
            start += len(item_texts)
        return out


PIXEL_KINDS = frozenset({"image", "video", "page"})


def _encoded(vector: np.ndarray, request: EmbedRequest) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32 bytes."""
    if request.encoding_format == "base64":
        return base64.b64encode(vector.tobytes()).decode("ascii")
    return vector.tolist()
