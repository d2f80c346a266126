"""What a server accepts and how it batches: every limit in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

from ..processors.limits import MAX_CELLS

MiB = 2**20


@dataclass(frozen=True)
class ServeCfg:
    max_upload_bytes: int = 20 * MiB  # a search upload (image or video); larger: 413
    default_k: int = 10  # search results when the request does not say
    max_body_bytes: int = 32 * MiB  # a /v1/embeddings JSON body; larger: 413
    max_head_bytes: int = 64 * 1024  # request line + headers; larger: 431 (a long URL: 414)
    max_items: int = 2048  # items in one /v1/embeddings input (OpenAI's limit); more: 413
    max_text_chars: int = 200_000  # characters of one text (a text part, an instruction)
    # pixels of one image: the library's limit (Pillow's decompression-bomb threshold)
    max_image_pixels: int = PILImage.MAX_IMAGE_PIXELS or 89_478_485
    max_video_bytes: int = 16 * MiB  # bytes of one video
    max_video_frames: int = 64  # frames sampled from one video (``num_frames``)
    max_table_cells: int = MAX_CELLS  # rows x columns of one table (the library's limit)
    max_document_parts: int = 64  # content parts of one interleaved document
    max_batch: int = 64  # items per encode() call; 1 turns dynamic batching off
    # how long a batch waits for more requests after its first; at 0, requests that arrive
    # while the model is busy still share the next call (benchmarks/serve_embed.py compares)
    max_wait_ms: float = 0.0
    text_batch_size: int = 32  # encode's batch_size (parts per tower forward) for text batches
    # encode's batch_size when a batch holds images or video: on CPU, mini's EfficientNet runs
    # 4-image forwards at about half the per-image time of 1- or 32-image ones
    # (benchmarks/serve_embed.py times both)
    pixel_batch_size: int = 4
    api_key: str | None = None  # when set, every route but GET /health needs this bearer key
    allow_files: Path | None = None  # file:// URLs are read only under this folder (off: None)
    reload_interval_s: float = 1.0  # how often the index folder is checked for a new generation
