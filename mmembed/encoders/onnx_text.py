"""A text tower as an ONNX graph, run by ONNX Runtime and ``tokenizers``: text without torch.

``import torch`` alone takes seconds, longer than a whole text search should. A transformers
text tower (tokens -> hidden states -> pooling -> unit vector) is exported once with torch
(``export_text_tower``) and run later by ``OnnxTextEncoder``, which imports only numpy,
``onnxruntime`` and ``tokenizers``. The export folder holds::

    model.onnx      input ids, attention mask (, token type ids) -> (B, D) unit vectors
    tokenizer.json  the tower's fast tokenizer, truncating to the tower's window
    onnx_text.json  OnnxTextCfg: what was exported, from which tower (its digest)
    *.xxh3          each file's size and checksum, checked on open (``hub.verified``)

Outputs match the torch tower within 1e-5 (``tests/test_onnx_query.py``).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import verified
from ..hub.atomic import staged_folder

EXPORT_VERSION = 1  # bump when the exported graph or folder layout changes
CONFIG_NAME = "onnx_text.json"
FILES = (CONFIG_NAME, "model.onnx", "tokenizer.json")  # what a complete export holds
OPSET = 17


@dataclass(frozen=True)
class OnnxTextCfg:
    digest: str  # tower_digest of the exported tower: weights, tokenizer, pooling
    inputs: tuple[str, ...]  # ONNX inputs, named as the tokenizer names its outputs
    max_tokens: int  # the tower's window, special tokens included (longer texts are cut)
    dim: int  # width of the output vectors
    pad_id: int = 0  # token id that pads input ids of shorter texts in a batch
    version: int = EXPORT_VERSION  # layout version of the folder


TORCH_ATOL = 1e-5  # largest difference (unit rows) to the torch tower an export may show


def export_text_tower(text: Any, folder: Path, digest: str) -> Path:
    """Export an ``HFTextTower`` (pooling and normalisation included) to ``folder``.

    The folder is written next to its destination and renamed into place, so a reader never
    sees half an export.
    """
    import torch
    from torch import nn

    class Pooled(nn.Module):
        def __init__(self, tower: nn.Module, names: tuple[str, ...]):
            super().__init__()
            self.tower, self.names = tower, names

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            tokens = dict(zip(self.names, tensors, strict=True))
            return nn.functional.normalize(self.tower(tokens).float(), dim=-1)  # (B, D)

    sample = text.tokenize(["an example query", "a second, longer example query text"])
    names = tuple(sample)
    pad_id = getattr(text.tokenizer, "pad_token_id", None) or 0
    cfg = OnnxTextCfg(digest, names, int(text.max_tokens), int(text.dim), int(pad_id))
    with staged_folder(folder) as staging:
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            warnings.catch_warnings(),
            eager_attention(text.model),
        ):
            warnings.simplefilter("ignore")  # tracer notes on shapes the graph keeps dynamic
            torch.onnx.export(
                Pooled(text, names).eval(),
                tuple(sample[name] for name in names),
                str(staging / "model.onnx"),
                input_names=list(names),
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names}
                | {"embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        check_against_torch(staging / "model.onnx", text)
        backend = text.tokenizer.backend_tokenizer
        (staging / "tokenizer.json").write_text(backend.to_str())
        (staging / CONFIG_NAME).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        verified.publish_folder(staging)
    return folder


@contextmanager
def eager_attention(model: Any):
    """Trace attention as plain matmuls + softmax, not SDPA (``benchmarks.probes text-onnx``)."""
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or before in (None, "eager"):
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(before)


def check_against_torch(path: Path, text: Any) -> None:
    """Raise unless the graph at ``path`` gives the torch tower's unit vectors within 1e-5 on a
    padded sample batch: a graph that traced wrong is never published."""
    import torch

    sample = text.tokenize(CHECK_TEXTS)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(text(sample).float(), dim=-1).numpy()
    got = session_of(path, 1).run(["embedding"], {k: v.numpy() for k, v in sample.items()})[0]
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not diff <= TORCH_ATOL:
        raise ValueError(f"the ONNX export differs from torch by {diff:.1e} (> {TORCH_ATOL})")


CHECK_TEXTS = [  # padded to different lengths in one batch, as encode's batches are
    "a",
    "A cat lies on a blanket.",
    " ".join(["The rocket stands on the launch pad before lift-off."] * 40),
]


def export_folder(home: Path, digest: str) -> Path:
    """Where a tower's export is cached: ``home/onnx/<digest prefix>``, one per tower digest."""
    return home / "onnx" / digest[:32]


def cached_export(text: Any, home: Path, digest: str) -> tuple[Path, OnnxTextCfg]:
    """The tower's export under ``home``, written (atomically) on first use of this digest."""
    folder = export_folder(home, digest)
    cfg = read_cfg(folder)
    if cfg is None or cfg.digest != digest:
        export_text_tower(text, folder, digest)
        cfg = read_cfg(folder)
        if cfg is None:
            raise FileNotFoundError(f"no ONNX text export in {folder} after writing it")
    return folder, cfg


def open_session(folder: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``folder/model.onnx`` on ``threads`` threads."""
    return session_of(folder / "model.onnx", threads)


def session_of(model_file: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``model_file`` on ``threads`` threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle worker threads would spin for the next call and steal the CPU from concurrent
    # requests (measured: 28 ms -> 15 ms per query on a busy 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )


def read_cfg(folder: Path) -> OnnxTextCfg | None:
    """The export's config, or None when the folder holds no complete, intact export of this
    version (a damaged one is deleted, with a warning naming the file: see ``hub.verified``)."""
    if not verified.intact_folder(folder, FILES):
        return None
    try:
        raw = json.loads((folder / CONFIG_NAME).read_text())
        cfg = OnnxTextCfg(**{**raw, "inputs": tuple(raw["inputs"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if cfg.version != EXPORT_VERSION or not (folder / "model.onnx").is_file():
        return None
    return cfg


class OnnxTextEncoder:
    """Runs an exported text tower: ``encode(texts)`` -> ``(N, D)`` float32 unit rows.

    Safe to call from several threads at once (ONNX Runtime sessions and ``tokenizers``
    encoders are).
    """

    def __init__(self, folder: Path, threads: int = 1):
        from tokenizers import Tokenizer

        cfg = read_cfg(folder)
        if cfg is None:
            raise FileNotFoundError(f"no ONNX text export in {folder}")
        self.cfg = cfg
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=cfg.max_tokens)
        self.tokenizer.no_padding()
        self.session = open_session(folder, threads)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit row per text; texts of one call are padded to the longest."""
        encodings = self.tokenizer.encode_batch(list(texts))
        length = max(len(encoding.ids) for encoding in encodings)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feeds = {}
        for name in self.cfg.inputs:
            pad = self.cfg.pad_id if name == "input_ids" else 0
            rows = np.full((len(encodings), length), pad, dtype=np.int64)
            for row, values in enumerate(columns[name]):
                rows[row, : len(values)] = values
            feeds[name] = rows
        return self.session.run(["embedding"], feeds)[0].astype(np.float32)
