"""CLIP-family towers through open_clip: any architecture, any pretrained tag."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import open_clip
import torch
from open_clip.transformer import text_global_pool as open_clip_text_pool
from PIL import Image
from torch import nn

from ..hub import mmembed_home
from ..processors.pixels import tensor_steps
from ..processors.text import split_to_window
from . import engines, onnx_image
from .runtime import RUNTIMES, RuntimeChoice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenCLIPCfg:
    architecture: str  # open_clip model name, e.g. "ViT-B-32" or "hf-hub:org/repo"
    pretrained: str | None = None  # open_clip pretrained tag or weights file; None = random weights


def create_open_clip(cfg: OpenCLIPCfg) -> tuple[nn.Module, object, object]:
    """(model, eval preprocess, tokenizer) in eval mode; random weights warn, as open_clip does."""
    if cfg.pretrained is None and not cfg.architecture.startswith("hf-hub:"):
        logger.warning(
            "open_clip:%s has no pretrained tag: weights are random (fine for tests and "
            "benchmarks, useless for search)",
            cfg.architecture,
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        cfg.architecture, pretrained=cfg.pretrained
    )
    tokenizer = open_clip.get_tokenizer(cfg.architecture)
    return model.eval(), preprocess, tokenizer


class OpenCLIPImageTower(nn.Module):
    """open_clip's image tower; inside ``Embedder.encode`` it may run an fp32 ONNX Runtime
    export of ``model.visual`` (``runtime``, see ``encoders.runtime``: ViT-B-32 1.98x torch on
    one CPU thread, within 1e-5)."""

    def __init__(self, model: nn.Module, preprocess, runtime: str = "auto"):
        super().__init__()
        self.model = model
        self._preprocess = preprocess
        self.dim = int(model.visual.output_dim)
        self._runtime = RuntimeChoice("open_clip image tower", runtime, RUNTIMES)
        self._active = None  # the ONNX Runtime session inside ``inference()``, or None

    @property
    def runtime(self) -> str:
        return self._runtime.runtime

    def set_runtime(self, runtime: str) -> OpenCLIPImageTower:
        """One of ``encoders.runtime.RUNTIMES``: "auto", "onnx", "torch", "onnx-int8", ..."""
        self._runtime.set(runtime)
        return self

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    @property
    def pixel_steps(self) -> list | None:
        """The eval transform as tensor steps, for preprocessing on the GPU (processors.pixels)."""
        return tensor_steps(self._preprocess)

    @contextmanager
    def inference(self):
        """Gradient-free forwards in this block may run the export (only ``encode`` enters)."""
        self._active = self._runtime.session(self.model.visual, self._open_export)
        try:
            yield
        finally:
            self._active = None

    def _open_export(self, digest: str):
        folder = onnx_image.cached_visual_export(self.model.visual, mmembed_home(), digest)
        threads, runtime = torch.get_num_threads(), self._runtime.engine
        if runtime == "onnx":
            return engines.ort_session(folder / "model.onnx", threads)
        check = self._pixels(onnx_image.drawn_images(8, seed=0))
        calibration = self._pixels(onnx_image.drawn_images(8, seed=1))
        return engines.open_engine(folder, runtime, threads, [check], [calibration])

    def _pixels(self, images: list) -> dict:
        """ONNX feeds of ``images`` through the tower's own eval transform."""
        return {"pixels": torch.stack([self.preprocess(i) for i in images]).numpy()}

    def __getstate__(self) -> dict:
        """Copies and pickles leave the ONNX session behind (it is opened again on next use)."""
        return {**self.__dict__, "_active": None}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        session = self._active
        if session is not None and not torch.is_grad_enabled():
            feeds = {"pixels": pixels.detach().cpu().float().numpy()}
            return torch.from_numpy(session.run(["embedding"], feeds)[0])  # (B, D)
        return self.model.encode_image(pixels)


def is_causal_text_tower(model: nn.Module) -> bool:
    """True when trailing padding cannot change the text embedding.

    A causal attention mask means no token attends to later (pad) tokens, and pooling at the
    end-of-text token reads a position before the padding; then a batch can be cut at its
    longest text instead of the full context (77 tokens for CLIP).
    """
    return (
        isinstance(getattr(model, "attn_mask", None), torch.Tensor)
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
        and hasattr(model, "token_embedding")
        and hasattr(model, "positional_embedding")
    )


class OpenCLIPTextTower(nn.Module):
    """open_clip's text tower; causal towers run only up to the batch's longest text."""

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = int(getattr(tokenizer, "context_length", 77))
        self.dim = int(model.visual.output_dim)  # CLIP towers share one output width
        self.trim_padding = is_causal_text_tower(model)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(texts)  # (B, context), zero-padded on the right
        if self.trim_padding:
            ids = ids[:, : max(int(self.token_counts({"input_ids": ids}).max()), 1)]
        return {"input_ids": ids}

    def token_counts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) tokens per row, start and end included (padding is token 0)."""
        return (tokens["input_ids"] != 0).sum(dim=1)

    def select(
        self, tokens: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``rows`` of a tokenized batch; causal towers cut to the longest of them."""
        ids = tokens["input_ids"][rows]
        if self.trim_padding:
            ids = ids[:, : max(int(self.token_counts({"input_ids": ids}).max()), 1)]
        return {"input_ids": ids}

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = tokens["input_ids"]
        if not self.trim_padding:
            return self.model.encode_text(ids)
        return self._encode_trimmed(ids)

    def _encode_trimmed(self, ids: torch.Tensor) -> torch.Tensor:
        """open_clip's ``CLIP.encode_text`` on a (B, L) batch with L <= context."""
        model, length = self.model, ids.shape[1]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(ids).to(cast_dtype)  # (B, L, W)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        x = open_clip_text_pool(x, ids, model.text_pool_type, getattr(model, "text_eos_id", None))
        projection = model.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection  # (B, D)

    def count_tokens(self, texts: list[str]) -> list[int]:
        ids = self.tokenizer(texts)  # (B, context) with start/end tokens and zero padding
        return [max(int((row != 0).sum()) - 2, 1) for row in ids]

    def split_to_window(self, text: str) -> list[str]:
        return split_to_window(text, self.count_tokens, self.max_tokens - 2)
