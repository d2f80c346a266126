"""An Embedder that loads on first use, so work that needs no model does not wait for one.

A re-run of ``mmembed index`` over unchanged files hashes them, finds nothing to embed and
keeps the current generation: it needs the model's name, modalities and width, which the zoo
entry states, but never its weights. Loading mmembed-mini imports torch, transformers and
timm (seconds); ``LazyEmbedder`` defers that until something is embedded.
"""

from __future__ import annotations

from typing import Any

from . import zoo


class LazyEmbedder:
    """Stands in for ``mmembed.load(name, device)`` until an attribute the zoo cannot answer.

    ``name``, ``modalities``, ``dim`` and the instructions come from the zoo entry; anything
    else (``encode``, ``towers``...) loads the model once and is forwarded to it. Names that are
    not zoo entries (folders, ``open_clip:`` names) load at construction.
    """

    def __init__(self, name: str, device: str | None = None, **options: Any):
        self.name = name
        self._device = device
        self.options = options  # the zoo builder's settings, e.g. page="ocr"
        self._entry = zoo.get_pretrained(name)
        self._model: Any = None
        if self._entry is None:
            self.load()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        """The real Embedder (loaded on the first call)."""
        if self._model is None:
            from .registry import load

            self._model = load(self.name, device=self._device, **self.options)
        return self._model

    @property
    def modalities(self) -> frozenset:
        return frozenset(self._entry.modalities) if self._model is None else self._model.modalities

    @property
    def device(self) -> Any:
        """The device asked for (a string, "cpu" by default) until the model loads."""
        return (self._device or "cpu") if self._model is None else self._model.device

    @property
    def dim(self) -> int:
        return self._entry.dim if self._model is None else self._model.dim

    @property
    def query_instruction(self) -> str | None:
        return (
            self._entry.query_instruction if self._model is None else self._model.query_instruction
        )

    @property
    def document_instruction(self) -> str | None:
        if self._model is None:
            return self._entry.document_instruction
        return self._model.document_instruction

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.load(), attribute)
