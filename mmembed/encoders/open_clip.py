"""CLIP-family towers through open_clip: any architecture, any pretrained tag."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer
from open_clip.transform import PreprocessCfg
from open_clip.transformer import text_global_pool as open_clip_text_pool
from PIL import Image
from torch import nn

from ..hub import load_state_dict, mmembed_home
from ..processors.pixels import tensor_steps
from ..processors.text import split_to_window
from . import engines, onnx_image
from .runtime import RUNTIMES, RuntimeChoice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenCLIPCfg:
    """An open_clip model as built: everything that rebuilds it without open_clip's registry."""

    architecture: str  # open_clip model name the config comes from (a label once built)
    model_cfg: dict[str, Any]  # open_clip's own model config as built (QuickGELU included)
    preprocess: PreprocessCfg  # open_clip's eval preprocessing (size, mean, std, ...)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> OpenCLIPCfg:
        """Read a saved config (JSON lists back to tuples)."""
        preprocess = {
            k: tuple(v) if isinstance(v, list) else v for k, v in saved["preprocess"].items()
        }
        return cls(saved["architecture"], saved["model_cfg"], PreprocessCfg(**preprocess))

    @property
    def image_size(self) -> int:
        """The square side images are fed at."""
        size = self.preprocess.size
        return int(size[0] if isinstance(size, (list, tuple)) else size)


def open_clip_model(cfg: OpenCLIPCfg) -> nn.Module:
    """The open_clip model of ``cfg.model_cfg`` with random weights, in eval mode."""
    model_cfg = json.loads(json.dumps(cfg.model_cfg))  # a deep copy open_clip may edit
    text_cfg, vision_cfg = model_cfg.get("text_cfg", {}), model_cfg.get("vision_cfg", {})
    if "multimodal_cfg" in model_cfg:
        raise ValueError(f"{cfg.architecture}: CoCa models are not supported")
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False  # weights come from the checkpoint, not the Hub
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    custom_text = model_cfg.pop("custom_text", False) or hf_text
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return model_class(**model_cfg).eval()


def load_open_clip_weights(model: nn.Module, path: Path) -> None:
    """Read a checkpoint without unpickling code and load it strictly."""
    state = load_state_dict(path)
    if next(iter(state)).startswith("module."):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    for key in ("logit_scale", "logit_bias"):  # some checkpoints store these as 0-d, some 1-d
        if key in state and hasattr(model, key):
            state[key] = state[key].reshape(getattr(model, key).shape)
    model.load_state_dict(state, strict=True)


def open_clip_tokenizer(model_cfg: dict[str, Any], hf_files: str | Path | None):
    """The tokenizer ``open_clip.get_tokenizer`` would build; a Hugging Face tokenizer reads
    ``hf_files`` (a folder, or a Hub name: then it downloads)."""
    text_cfg = model_cfg.get("text_cfg", {})
    context = text_cfg.get("context_length", 77)
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if text_cfg.get("hf_tokenizer_name"):
        if hf_files is None:
            raise ValueError("this open_clip model needs its Hugging Face tokenizer files")
        return HFTokenizer(
            str(hf_files),
            context_length=context,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    return open_clip.tokenizer.SimpleTokenizer(context_length=context, **kwargs)


def open_clip_towers(model: nn.Module, tokenizer, cfg: OpenCLIPCfg) -> dict[str, nn.Module]:
    """Text and image towers over one open_clip model, preprocessing from ``cfg``."""
    from open_clip.transform import image_transform_v2

    preprocess = image_transform_v2(cfg.preprocess, is_train=False)
    open_clip.model.set_model_preprocess_cfg(model, asdict(cfg.preprocess))
    return {
        "text": OpenCLIPTextTower(model, tokenizer),
        "image": OpenCLIPImageTower(model, preprocess),
    }


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
        self._active = self._runtime.session(self.model.visual, self._open_export, self._race)
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

    def _race(self, session) -> dict:
        """engine -> ``forward`` on 8 drawn images through that engine, for "auto"'s
        measurement (``encoders.speed``)."""
        pixels = torch.from_numpy(self._pixels(onnx_image.drawn_images(8, seed=0))["pixels"])

        def run(engine):
            def forward() -> None:
                self._active = engine
                try:
                    with torch.inference_mode():
                        self(pixels)
                finally:
                    self._active = None

            return forward

        return {"onnx": run(session), "torch": run(None)}

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

    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write a Hugging Face tokenizer's files, when the model has one
        (``encoders.base.SavesFiles``)."""
        if isinstance(self.tokenizer, HFTokenizer):
            self.tokenizer.tokenizer.save_pretrained(folder)
        return {}

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
