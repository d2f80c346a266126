"""What every tower provides, so the embedder can batch any of them the same way."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from PIL import Image


@runtime_checkable
class TextTower(Protocol):
    """Maps strings to ``(B, D)`` embeddings (not yet normalised)."""

    dim: int
    max_tokens: int  # the window long text is chunked to

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]: ...

    def token_counts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def select(
        self, tokens: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> dict[str, torch.Tensor]: ...

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def split_to_window(self, text: str) -> list[str]: ...


@runtime_checkable
class ImageTower(Protocol):
    """Maps preprocessed pixels ``(B, 3, H, W)`` to ``(B, D)`` embeddings."""

    dim: int

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    def forward(self, pixels: torch.Tensor) -> torch.Tensor: ...
