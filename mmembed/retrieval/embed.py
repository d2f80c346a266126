"""The local embedding engine: decode in worker processes, embed in batches, checkpoint.

Each batch lands in the staging checkpoint in one transaction, so a killed run resumes
where it stopped. Bad items never stop the run: decoding failures and the Embedder's
``on_error="skip"`` errors are staged with their reason.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from .decode import Decoded, decode_item
from .pages import page_planner
from .store import Staged, Staging
from .walk import Item

logger = logging.getLogger(__name__)

RENORMALIZE_LIMIT = 0.05  # norms this close to 1 (bf16/fp16 rounding) are renormalised


@dataclass(frozen=True)
class EmbedSettings:
    """Everything besides content that decides a vector; an index keeps one setting.

    Attributes:
        model: the Embedder's name.
        instruction: instruction given to ``encode`` for indexed items.
        dim: Matryoshka dimension (None: the model's full dimension).
        page_route: how the model reads page images ("reader", "ocr", "pixel"; None: not
            known, or it reads none). mmembed-mini reads them by its ``page=`` option under one
            name, so the index keeps the route to tell the towers apart.
    """

    model: str
    instruction: str | None
    dim: int | None
    page_route: str | None = None

    def to_dict(self) -> dict[str, Any]:
        settings = {"model": self.model, "instruction": self.instruction, "dim": self.dim}
        return {**settings, "page_route": self.page_route} if self.page_route else settings


Engine = Callable[[Sequence[Item], Staging], None]


def safe_decode(item: Item) -> Decoded | InputError:
    """``decode_item``, returning the InputError instead of raising it."""
    try:
        return decode_item(item)
    except InputError as error:
        return error


def encode_decoded(
    embedder: Any, decoded: Sequence[Decoded | InputError], settings: EmbedSettings
) -> list[Staged]:
    """Embed a batch of decoded items; failures become entries with a reason."""
    entries = [
        Staged(None, reason=result.reason) if isinstance(result, InputError) else None
        for result in decoded
    ]
    ready = [index for index, result in enumerate(decoded) if isinstance(result, Decoded)]
    if not ready:
        return entries
    vectors = embedder.encode(
        [decoded[index].input for index in ready],
        instruction=settings.instruction,
        batch_size=len(ready),
        normalize=True,
        dim=settings.dim,
        show_progress_bar=False,
        on_error="skip",
    )
    errors = getattr(vectors, "errors", {}) or {}
    for row, index in enumerate(ready):
        result = decoded[index]
        vector = np.asarray(vectors[row], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            norm = float(np.linalg.norm(vector))
        if row in errors or not np.isfinite(vector).all():
            error = errors.get(row)
            reason = error.reason if isinstance(error, InputError) else str(error or "NaN vector")
            entries[index] = Staged(None, result.snippet, result.thumbnail, reason)
        elif not abs(norm - 1.0) <= RENORMALIZE_LIMIT:
            reason = f"the model returned a vector of norm {norm:.4g}, not a unit vector"
            entries[index] = Staged(None, result.snippet, result.thumbnail, reason)
        else:  # exact to float32 precision, whatever precision the model ran in
            entries[index] = Staged(vector / np.float32(norm), result.snippet, result.thumbnail)
    return entries


def local_engine(
    embedder: Any,
    settings: EmbedSettings,
    batch_size: int = 32,
    num_workers: int | None = None,
    show_progress: bool | None = None,
    devices: Sequence[str] | None = None,
) -> Engine:
    """An engine embedding in this process, fed by worker processes that decode and plan.

    Workers (``mmembed.preparation``) decode each item, make its thumbnail and turn it into
    the model's parts; this process only embeds and checkpoints, one batch per ``encode``
    call, on the model's device or a copy of the model on each of ``devices``.
    """

    def run(items: Sequence[Item], staging: Staging) -> None:
        if not items:
            return
        # torch comes with these: imported once there is something to embed (fast no-op runs).
        from ..embedder import map_on_replicas
        from ..preparation import prepared_chunks, resolve_workers

        model = embedder.load() if hasattr(embedder, "load") else embedder  # before forking
        # Any object with ``encode`` can index; an Embedder also plans in the workers.
        plan = page_planner(model, settings.instruction) if hasattr(model, "planner") else None
        replicas = model.replicas(devices) if hasattr(model, "replicas") else [model]

        def prepare(index: int) -> Decoded | InputError:
            decoded = safe_decode(items[index])
            if isinstance(decoded, InputError) or plan is None:
                return decoded
            try:
                return plan(decoded)
            except InputError as error:
                return error

        def embed(replica: Any, job: tuple) -> tuple:
            chunk, prepared = job
            return chunk, encode_decoded(replica, prepared.unpack(), settings)

        chunks = [
            range(start, min(start + batch_size, len(items)))
            for start in range(0, len(items), batch_size)
        ]
        jobs = prepared_chunks(chunks, prepare, resolve_workers(num_workers))
        progress = tqdm(
            total=len(items),
            desc="embedding",
            unit="item",
            disable=not (sys.stderr.isatty() if show_progress is None else show_progress),
        )
        with progress:
            for chunk, entries in map_on_replicas(replicas, jobs, embed):
                staging.put(
                    {items[i].cache_key: entry for i, entry in zip(chunk, entries, strict=True)}
                )
                progress.update(len(chunk))

    return run
