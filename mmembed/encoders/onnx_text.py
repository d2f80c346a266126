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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import verified
from .engines import ort_session
from .onnx_export import ExportSpec, cache_folder, export_checked

EXPORT_VERSION = 1  # bump when the exported graph or folder layout changes
CONFIG_NAME = "onnx_text.json"
FILES = (CONFIG_NAME, "model.onnx", "tokenizer.json")  # what a complete export holds


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
    """Export an ``HFTextTower`` (pooling and normalisation included) to ``folder``, checked
    against torch within ``TORCH_ATOL`` on a padded batch and published atomically
    (``onnx_export.export_checked``)."""
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
    check = text.tokenize(CHECK_TEXTS)
    names = tuple(sample)
    pad_id = getattr(text.tokenizer, "pad_token_id", None) or 0
    cfg = OnnxTextCfg(digest, names, int(text.max_tokens), int(text.dim), int(pad_id))
    spec = ExportSpec(
        inputs=names,
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names}
        | {"embedding": {0: "batch"}},
        atol=TORCH_ATOL,
    )

    def tokenizer_file(staging: Path) -> None:
        (staging / "tokenizer.json").write_text(text.tokenizer.backend_tokenizer.to_str())

    return export_checked(
        Pooled(text, names).eval(),
        [sample[name] for name in names],
        [check[name] for name in names],
        folder,
        spec,
        asdict(cfg),
        CONFIG_NAME,
        extra=tokenizer_file,
        tracing=eager_attention(text.model),
    )


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


CHECK_TEXTS = [  # padded to different lengths in one batch, as encode's batches are
    "a",
    "A cat lies on a blanket.",
    " ".join(["The rocket stands on the launch pad before lift-off."] * 40),
]


# The fixed sentence set every quantised or OpenVINO text engine is checked on when it opens
# (``engines.open_engine``: mean cosine >= 0.99 to the fp32 graph), and the texts the static
# int8 copy takes its activation ranges from. Never the same texts: a copy is not checked on
# what it was calibrated on.
CHECK_SENTENCES = (
    "A man is riding a bicycle down a steep mountain trail.",
    "The committee postponed its decision until the next quarterly meeting.",
    "how do I reset my router password",
    "Fresh bread is baked every morning in the small shop on the corner.",
    "The rocket's second stage separated two minutes after launch.",
    "cheap flights from Lisbon to Berlin in March",
    "She plays the cello in the city orchestra on weekends.",
    "Heavy rain caused flooding in several low-lying neighbourhoods overnight.",
    "Python lists keep their items in the order they were added.",
    "a dog catching a frisbee in the park",
    "The museum reopened after a two-year renovation of its east wing.",
    "Symptoms of dehydration include headache, dizziness and dry mouth.",
    "The function returns None when the key is missing from the dictionary.",
    "Two children are building a sandcastle near the water's edge.",
    "quarterly revenue grew by eight percent compared with last year",
    "The old bridge was closed to traffic after engineers found cracks in its supports.",
)
CALIBRATION_TEXTS = (
    "A woman is slicing tomatoes on a wooden cutting board.",
    "best hiking boots for wet weather",
    "The train to the airport leaves every fifteen minutes from platform four.",
    "Researchers measured the temperature of the lake at several depths each month.",
    "The library lends laptops to students for up to two weeks.",
    "what is the capital of Australia",
    "A cat sleeps in a patch of sunlight on the kitchen floor.",
    "The contract may be terminated by either party with thirty days' written notice.",
    "Stir the sauce gently and let it simmer for ten minutes before serving.",
    "The server returned an error because the request body was not valid JSON.",
    "Volunteers planted three hundred trees along the river bank on Saturday.",
    "symptoms of the common cold in young children",
    " ".join(
        [
            "The city council met on Tuesday to discuss the new budget, which includes funds",
            "for road repairs, two new schools and a longer opening time for public pools.",
            "Several residents spoke about traffic near the market, and the council agreed to",
            "study a one-way system before the summer holidays begin.",
        ]
        * 3
    ),
)


# The batches "auto" times torch and the export on (``encoders.speed``): a batch of short
# sentences and queries, and one of full windows (a long text cut at the tower's max_tokens,
# as documents and paragraphs are), so neither kind alone decides. With paragraphs of ~170
# tokens instead, ONNX Runtime won the race at one thread on the Xeon and then lost on
# sentences, paragraphs and the mix (docs/benchmarks.md): the full window is where it costs.
SPEED_TEXTS = (
    CHECK_SENTENCES + CALIBRATION_TEXTS[:-1],
    (" ".join([CALIBRATION_TEXTS[-1]] * 2),) * 8,
)


def text_feeds(text: Any, texts: tuple[str, ...], inputs: tuple[str, ...]) -> list[dict]:
    """``texts`` tokenized by the tower as one padded batch, as ONNX feeds of ``inputs``."""
    import numpy

    tokens = text.tokenize(list(texts))
    zeros = numpy.zeros_like(tokens["input_ids"].numpy())
    return [
        {name: tokens[name].numpy().astype("int64") if name in tokens else zeros for name in inputs}
    ]


def export_folder(home: Path, digest: str) -> Path:
    """Where a tower's export is cached: ``home/onnx/<digest prefix>``, one per tower digest."""
    return cache_folder(home, digest)


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


session_of = ort_session  # an ONNX Runtime CPU session of a model file (``engines``)


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
