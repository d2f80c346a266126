"""Run the parts of many items through their towers in batches, and fuse them per item.

Parts are grouped by kind (all texts of a chunk together, sorted by length; all images
together; videos by frame count), so a mixed list costs what its modalities cost separately.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads.fusion import PART_KINDS, PartBatch
from .processors.pixels import preprocess_batch
from .processors.plan import Part
from .processors.sequence import SequenceItem
from .space.precision import input_dtype


def _batches(indices: list[int], size: int):
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def embed_texts(tower: nn.Module, texts: list[str], batch_size: int, device) -> torch.Tensor:
    """One tokenizer pass over all ``texts``, then batches of similar token count.

    Sorting by tokens (not characters) keeps the padding each batch computes on small; each
    batch is cut to its own longest text by ``tower.select``. Rows come back in input order.
    """
    tokens = tower.tokenize(texts)  # padded to the longest of all texts
    order = torch.argsort(tower.token_counts(tokens), descending=True, stable=True)
    out = None
    for rows in order.split(batch_size):
        batch = {k: v.to(device) for k, v in tower.select(tokens, rows).items()}
        embedded = tower(batch).float()  # (b, D)
        if out is None:
            out = torch.empty(len(texts), embedded.shape[1], device=device)
        out[rows.to(device)] = embedded
    return out


def embed_pixels(
    tower: nn.Module, pixels: list[torch.Tensor], batch_size: int, device
) -> torch.Tensor:
    """Batches of preprocessed pixels; raw uint8 pixels are preprocessed here, on ``device``."""
    dtype = input_dtype(tower)
    raw = pixels[0].dtype == torch.uint8
    steps = tower.pixel_steps if raw else None
    chunks = []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size]
        if raw:
            stacked = preprocess_batch(steps, [p.to(device, non_blocking=True) for p in batch])
        else:
            stacked = torch.stack(batch)  # (b, 3, H, W)
        chunks.append(tower(stacked.to(device=device, dtype=dtype)).float())
    return torch.cat(chunks)  # (n, D)


def embed_videos(
    tower: nn.Module, temporal: nn.Module, videos: list[torch.Tensor], batch_size: int, device
) -> torch.Tensor:
    """Unit frame embeddings, then the temporal module per group of equal length.

    Frames are normalised first so each counts equally, whatever the tower's output norm.
    """
    frames = [frame for video in videos for frame in video]
    flat = nn.functional.normalize(embed_pixels(tower, frames, batch_size, device), dim=-1)
    out = torch.empty(len(videos), flat.shape[1], device=device)
    starts, offset = [], 0
    for video in videos:
        starts.append(offset)
        offset += video.shape[0]
    by_length: dict[int, list[int]] = {}
    for i, video in enumerate(videos):
        by_length.setdefault(video.shape[0], []).append(i)
    for length, members in by_length.items():
        stacked = torch.stack([flat[starts[i] : starts[i] + length] for i in members])  # (b, T, D)
        out[members] = temporal(stacked).float()
    return out


def embed_sequences(
    tower: nn.Module, items: list[SequenceItem], batch_size: int, device
) -> torch.Tensor:
    """Whole items through a VLM tower, batched by similar pixel count and length.

    Grouping by shape keeps padding (text tokens and image patches) small; rows come back in
    the order of ``items``.
    """
    order = sorted(range(len(items)), key=lambda i: (items[i].num_pixels, items[i].num_chars))
    out = None
    for batch in _batches(order, batch_size):
        embedded = tower([items[i] for i in batch]).float()  # (b, D)
        if out is None:
            out = torch.empty(len(items), embedded.shape[1], device=embedded.device)
        out[batch] = embedded
    return out.to(device)


def embed_parts(
    towers: nn.ModuleDict,
    temporal: nn.Module,
    items: list[list[Part]],
    batch_size: int,
    device,
) -> PartBatch:
    """Embed every part of ``items`` (each a list of parts) and return them flattened."""
    flat = [part for parts in items for part in parts]
    kinds = [part.kind for part in flat]
    embeddings = None
    for kind in PART_KINDS:
        rows = [i for i, k in enumerate(kinds) if k == kind]
        if not rows:
            continue
        payloads = [flat[i].payload for i in rows]
        if kind == "text":
            result = embed_texts(towers["text"], payloads, batch_size, device)
        elif kind == "sequence":
            result = embed_sequences(towers["sequence"], payloads, batch_size, device)
        elif kind == "video":
            result = embed_videos(towers["image"], temporal, payloads, batch_size, device)
        else:
            result = embed_pixels(towers[kind], payloads, batch_size, device)
        if embeddings is None:
            embeddings = torch.empty(len(flat), result.shape[1], device=device)
        embeddings[torch.tensor(rows, device=device)] = nn.functional.normalize(result, dim=-1)
    return PartBatch(
        embeddings=embeddings,  # (P, D)
        item=torch.tensor([i for i, parts in enumerate(items) for _ in parts], device=device),
        weight=torch.tensor([part.weight for part in flat], device=device),
        position=torch.tensor([part.position for part in flat], device=device),
        modality=torch.tensor([PART_KINDS.index(kind) for kind in kinds], device=device),
        num_items=len(items),
    )
