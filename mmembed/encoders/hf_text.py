"""Text towers from transformers checkpoints, pooled the way sentence-transformers pools them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..hub import mmembed_home
from ..processors.text import split_to_window, windows_at_word_starts
from . import engines, onnx_text
from .runtime import RUNTIMES, RuntimeChoice

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "last")


@dataclass(frozen=True)
class HFTextCfg:
    path: str  # local directory (or hub id) of a transformers / sentence-transformers checkpoint
    pooling: str | None = None  # "mean", "cls" or "last"; None reads 1_Pooling/config.json
    max_tokens: int | None = (
        None  # window incl. special tokens; None reads sentence_bert_config.json
    )
    weights: bool = True  # False: build from config.json only; a saved Embedder's weights follow
    # What runs the forward inside Embedder.encode. "auto": an fp32 ONNX Runtime export (within
    # 1e-5 of torch, 1.5-2.4x faster on CPU; exported once per weights under $MMEMBED_HOME/onnx)
    # when the tower is in eval mode on CPU in fp32, torch otherwise (GPU, bf16, training, or
    # weights changed in place since the export); "onnx": the same but warns on each fallback;
    # "torch": always torch; "onnx-int8", "openvino", "openvino-int8": the export on another
    # engine, checked on load (encoders.runtime). Gradients always run torch.
    runtime: str = "auto"


def read_pooling(model_dir: Path) -> str:
    """The pooling a sentence-transformers checkpoint declares (mean when it declares none)."""
    config_path = model_dir / "1_Pooling" / "config.json"
    if not config_path.is_file():
        return "mean"
    config = json.loads(config_path.read_text())
    for key, mode in [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_lasttoken", "last"),
    ]:
        if config.get(key):
            return mode
    raise ValueError(f"{config_path}: no supported pooling mode (mean, cls, lasttoken) is set")


def read_max_tokens(model_dir: Path, model_limit: int) -> int:
    config_path = model_dir / "sentence_bert_config.json"
    if config_path.is_file():
        return int(json.loads(config_path.read_text()).get("max_seq_length", model_limit))
    return model_limit


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, L, D) hidden states and (B, L) attention mask -> (B, D)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        # Index of the last attended token works for left and right padding alike.
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@contextmanager
def quiet_transformers():
    """No per-tensor progress bar while loading: mmembed reports progress itself."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class HFTextTower(nn.Module):
    """A transformers encoder + tokenizer with sentence-transformers pooling."""

    def __init__(self, cfg: HFTextCfg):
        super().__init__()
        model_dir = Path(cfg.path)
        self.cfg = cfg
        with quiet_transformers():
            if cfg.weights:
                self.model = AutoModel.from_pretrained(cfg.path).eval()
            else:
                self.model = AutoModel.from_config(AutoConfig.from_pretrained(cfg.path)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.path)
        self.pooling = cfg.pooling or read_pooling(model_dir)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        model_limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        self.max_tokens = cfg.max_tokens or read_max_tokens(model_dir, model_limit)
        self.dim = int(self.model.config.hidden_size)
        self._runtime = RuntimeChoice(f"{cfg.path} text tower", cfg.runtime, RUNTIMES)
        self._active: tuple[Any, tuple[str, ...]] | None = None  # set by ``inference()``

    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write the tokenizer and model config; return the settings that rebuild the tower
        (``encoders.base.SavesFiles``)."""
        self.tokenizer.save_pretrained(folder)
        self.model.config.save_pretrained(folder)
        return {"pooling": self.pooling, "max_tokens": self.max_tokens, "runtime": self.runtime}

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """One batched pass of the fast tokenizer, padded to the longest text, not max_tokens."""
        return dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
        )

    def token_counts(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) tokens per row of ``tokenize``'s output, specials included."""
        return tokens["attention_mask"].sum(dim=1)

    def select(
        self, tokens: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``rows`` of a tokenized batch, with padding cut to the longest of them."""
        length = int(tokens["attention_mask"][rows].sum(dim=1).max())
        keep = (
            slice(None, length) if self.tokenizer.padding_side == "right" else slice(-length, None)
        )
        return {key: value[rows][:, keep] for key, value in tokens.items()}

    @property
    def runtime(self) -> str:
        return self._runtime.runtime

    def set_runtime(self, runtime: str) -> HFTextTower:
        """Switch what runs ``Embedder.encode``'s forward (``encoders.runtime``); saved with it."""
        self._runtime.set(runtime)
        self.cfg = replace(self.cfg, runtime=runtime)
        return self

    @contextmanager
    def inference(self):
        """Within this block, gradient-free forwards may run the ONNX export (``runtime``).

        Only ``Embedder.encode`` enters it, so training never meets the export.
        """
        self._active = self._runtime.session(self, self._open_export, self._race)
        try:
            yield
        finally:
            self._active = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the ONNX session behind (it is rebuilt on next use)."""
        return {**self.__dict__, "_active": None, "_digest_memo": None}

    def _open_export(self, digest: str) -> tuple[Any, tuple[str, ...]]:
        """The engine of ``runtime`` on the cached export (``encoders.engines``), exported again
        once if the cached file is damaged."""
        home = mmembed_home()
        folder, cfg = onnx_text.cached_export(self, home, digest)
        try:
            return self._engine(folder, cfg.inputs), cfg.inputs
        except engines.RuntimeUnavailable:
            raise
        except Exception as error:  # onnxruntime raises bare Exceptions on unreadable files
            logger.warning("%s: damaged ONNX export (%s); exporting it again", folder, error)
        onnx_text.export_text_tower(self, folder, digest)
        return self._engine(folder, cfg.inputs), cfg.inputs

    def _race(self, active: tuple[Any, tuple[str, ...]]) -> dict[str, Callable[[], object]]:
        """engine -> ``forward`` on the calibration batches (``onnx_text.SPEED_TEXTS``) through
        that engine, for "auto"'s measurement (``encoders.speed``)."""
        batches = [self.tokenize(list(texts)) for texts in onnx_text.SPEED_TEXTS]

        def run(engine: tuple[Any, tuple[str, ...]] | None) -> Callable[[], object]:
            def forward() -> None:
                self._active = engine
                try:
                    with torch.inference_mode():
                        for batch in batches:
                            self(batch)
                finally:
                    self._active = None

            return forward

        return {"onnx": run(active), "torch": run(None)}

    def _engine(self, folder: Path, inputs: tuple[str, ...]) -> Any:
        threads, runtime = torch.get_num_threads(), self._runtime.engine
        config = self.model.config
        fusions = engines.FUSIONS.get(getattr(config, "model_type", ""))
        if runtime == "onnx" and fusions is not None:  # ONNX Runtime's fusions, checked vs torch
            check = onnx_text.text_feeds(self, onnx_text.CHECK_SENTENCES, inputs)

            def expected() -> list:
                tokens = self.tokenize(list(onnx_text.CHECK_SENTENCES))
                with torch.no_grad():
                    hidden = self.model(**tokens).last_hidden_state  # (B, L, D)
                    pooled = pool(hidden, tokens["attention_mask"], self.pooling)
                return [nn.functional.normalize(pooled.float(), dim=-1).numpy()]

            fusion = {
                "model_type": fusions,
                "num_heads": int(config.num_attention_heads),
                "hidden_size": int(config.hidden_size),
            }
            folder = engines.fused_folder(folder, check, expected, fusion)
        if runtime == "onnx":
            return onnx_text.open_session(folder, threads)
        with torch.no_grad():
            check = onnx_text.text_feeds(self, onnx_text.CHECK_SENTENCES, inputs)
            calibration = onnx_text.text_feeds(self, onnx_text.CALIBRATION_TEXTS, inputs)
        return engines.open_engine(folder, runtime, threads, check, calibration)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        active = self._active
        if active is not None and not torch.is_grad_enabled():
            session, inputs = active  # the export returns unit vectors, pooled as below
            # Callers may leave token type ids out (page towers do); transformers reads zeros.
            zeros = {"token_type_ids": torch.zeros_like(tokens["input_ids"])}
            feeds = {
                name: tokens.get(name, zeros.get(name)).cpu().numpy().astype("int64")
                for name in inputs
            }
            return torch.from_numpy(session.run(["embedding"], feeds)[0])
        hidden = self.model(**tokens).last_hidden_state  # (B, L, D)
        return pool(hidden, tokens["attention_mask"], self.pooling)

    def count_tokens(self, texts: list[str]) -> list[int]:
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(row) for row in ids]

    def split_to_window(self, text: str) -> list[str]:
        """Consecutive pieces of ``text`` that fit the window, from one tokenizer pass.

        Cuts fall at word starts (the fast tokenizer's own word alignment), not at the
        window's last token, so a word is never split across two pieces.
        """
        window = self.max_tokens - self.tokenizer.num_special_tokens_to_add(pair=False)
        if not self.tokenizer.is_fast:
            return split_to_window(text, self.count_tokens, window)
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return windows_at_word_starts(text, encoded["offset_mapping"], encoded.word_ids(), window)
