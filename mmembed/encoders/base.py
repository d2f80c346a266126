"""What every tower provides, so the embedder can batch any of them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class SequenceTower(Protocol):
    """Reads whole items (a VLM): ``SequenceItem`` s to ``(B, D)`` embeddings."""

    dim: int

    def forward(self, items: list) -> torch.Tensor: ...


@runtime_checkable
class SavesFiles(Protocol):
    """A tower with files besides its weights (tokenizer, model config, processor).

    ``save_files(folder)`` writes them into ``folder`` and returns the settings that rebuild the
    tower with them (JSON values); ``models.save`` records both under the tower's kind.
    """

    def save_files(self, folder: Path) -> dict[str, Any]: ...


Tower = TextTower | ImageTower | SequenceTower
# What a tower of each kind of ``Embedder.towers`` must provide (pages are read as images).
TOWER_PROTOCOLS: dict[str, type] = {
    "text": TextTower,
    "image": ImageTower,
    "page": ImageTower,
    "sequence": SequenceTower,
}


def check_tower(kind: str, tower: object) -> None:
    """Raise ``TypeError`` naming what ``tower`` lacks to serve as the ``kind`` tower."""
    protocol = TOWER_PROTOCOLS.get(kind)
    if protocol is None:
        raise TypeError(f"unknown tower kind {kind!r}; use one of {sorted(TOWER_PROTOCOLS)}")
    if not isinstance(tower, protocol):
        members = [
            name
            for name in (*protocol.__annotations__, *_methods(protocol))
            if not hasattr(tower, name)
        ]
        raise TypeError(
            f"the {kind} tower {type(tower).__name__} is not a {protocol.__name__}: "
            f"it lacks {', '.join(members)}"
        )


def _methods(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    ]
