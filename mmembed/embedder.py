"""``Embedder``: one ``encode()`` for text, images, video, documents, tables and pages."""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .batching import embed_parts
from .encoders.base import Tower, check_tower
from .errors import InputError
from .heads.fusion import WeightedSumHead
from .inputs import INPUT_TYPES, Document, Text
from .modality import Modality
from .preparation import Ready, chunk_size, prepared_chunks, resolve_workers
from .processors.plan import Part, PlanCfg, Planned, plan_item
from .processors.table import TableLimits, table_to_markdown_chunks
from .results import Embeddings
from .space.precision import apply_precision
from .space.shared import SharedSpace, truncate

logger = logging.getLogger(__name__)

# Texts per tokenizer pass, in batches: the pass sorts them by token count, so more texts
# pad less; 32 batches bound the padded token tensors to a few MB.
TEXT_BATCHES_PER_CHUNK = 32

_MODALITIES_BY_TOWER = {
    "text": {Modality.TEXT, Modality.TABLE, Modality.DOCUMENT},
    "image": {Modality.IMAGE, Modality.VIDEO},
    "page": {Modality.PAGE},
    "sequence": set(Modality),  # a VLM reads any item whole
}


@dataclass(frozen=True)
class Build:
    """How ``mmembed.models`` rebuilds an embedder: its tower family and that family's typed
    build config (see ``models.family``); ``Embedder.save`` writes both."""

    family: str  # a family registered with models.family.register_family, e.g. "open_clip"
    cfg: Any  # the family's build config (a dataclass, e.g. encoders.open_clip.OpenCLIPCfg)


@dataclass
class EmbedderCfg:
    name: str  # the name ``mmembed.load`` was given
    query_instruction: str | None = None  # prepended by encode_query
    document_instruction: str | None = None  # prepended by encode_document
    instruction_weight: float = 1.0  # weight of an instruction embedded as its own text part
    # Markdown chunks of a table; about 250 word pieces each, the window of small text towers.
    table_limits: TableLimits = field(
        default_factory=lambda: TableLimits(max_cols=10, max_chars=800, max_cell_chars=24)
    )
    # Processes that decode and preprocess inputs ahead of the towers (mmembed.preparation):
    # None = the usable CPUs, at most 16; 0 = inline, in the calling thread.
    num_workers: int | None = None
    # Where images are resized and normalised: "auto" (on the model's device when it is a
    # GPU, else in the workers), "workers" (PIL, in the worker processes) or "device".
    preprocess_on: str = "auto"
    precision: str = "fp32"  # tower weights: "fp32" (exact) or "bf16" (see space.precision)
    build: Build | None = None  # how models/ rebuilds it (None: assembled by hand, not saveable)
    # What runs the towers' forward inside encode (encoders.runtime): "auto" (fp32 ONNX Runtime
    # where it gives torch's vectors), "onnx-int8", "openvino", "openvino-int8", "torch", ...
    runtime: str = "auto"


class Embedder(nn.Module):
    """Towers keyed by part kind -> instruction head -> shared space.

    Args:
        cfg: names, instructions and processing settings.
        towers: ``{"text": TextTower, "image": ImageTower, "page": ImageTower}``, any subset,
            or ``{"sequence": SequenceTower}`` (``encoders.base``; checked here).
        temporal: frame embeddings ``(B, T, D)`` -> video embedding ``(B, D)``.
        head: fuses the parts of each item (``WeightedSumHead`` by default).
        space: projection into the shared space (identity by default).
    """

    def __init__(
        self,
        cfg: EmbedderCfg,
        towers: dict[str, Tower],
        temporal: nn.Module,
        head: nn.Module | None = None,
        space: nn.Module | None = None,
    ):
        super().__init__()
        for kind, tower in towers.items():
            check_tower(kind, tower)
        self.cfg = cfg
        self.towers: MutableMapping[str, Tower] = nn.ModuleDict(towers)  # kind -> tower
        self.temporal = temporal
        self.head = head if head is not None else WeightedSumHead()
        self.space = space if space is not None else SharedSpace()
        dims = {int(tower.dim) for tower in self.towers.values()}
        if len(dims) != 1:
            raise ValueError(f"towers disagree on the embedding width: {sorted(dims)}")
        self.dim = dims.pop()
        self.eval()

    def set_precision(self, precision: str) -> Embedder:
        """Cast every tower to ``precision``; the head and space stay fp32."""
        for kind in list(self.towers):
            self.towers[kind] = apply_precision(self.towers[kind], precision)
        self.cfg.precision = precision
        return self

    def set_runtime(self, runtime: str) -> Embedder:
        """Run every tower that has an ONNX export on ``runtime`` (``encoders.runtime``); saved.

        An int8 or OpenVINO runtime is opened and checked against fp32 here, so a missing
        package or a failed check raises ``RuntimeUnavailable`` now, one line naming the fix.
        """
        from .encoders.runtime import FP32_RUNTIMES

        towers = [t for t in self.towers.values() if hasattr(t, "set_runtime")]
        if not towers and runtime not in FP32_RUNTIMES:
            from .encoders.engines import RuntimeUnavailable

            raise RuntimeUnavailable(
                runtime, f"no tower of {self.name} has an ONNX export", "use runtime='auto'"
            )
        for tower in towers:
            tower.set_runtime(runtime)
        self.cfg.runtime = runtime
        if runtime not in FP32_RUNTIMES:
            with torch.inference_mode():
                for tower in towers:
                    with tower.inference():  # opens the engine: export, copy, check
                        pass
        return self

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the embedder to ``directory``; ``mmembed.load(directory)`` gives it back exactly.

        The folder holds ``mmembed_config.json`` (every stage and its settings), the weights as
        ``model.safetensors`` and each tower's tokenizer / processor files.
        """
        from .models.save import save_embedder  # models/ builds embedders: imported on use

        return save_embedder(self, directory)

    def push_to_hub(
        self, repo_id: str, *, private: bool | None = None, token: str | None = None
    ) -> str:
        """``save`` into a Hugging Face Hub repo (created if needed); returns the commit URL."""
        from .models.save import push_to_hub

        return push_to_hub(self, repo_id, private=private, token=token)

    # -- what the model is -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def modalities(self) -> frozenset[Modality]:
        found = set()
        for kind in self.towers:
            found |= _MODALITIES_BY_TOWER[kind]
        return frozenset(found)

    @property
    def query_instruction(self) -> str | None:
        return self.cfg.query_instruction

    @property
    def document_instruction(self) -> str | None:
        return self.cfg.document_instruction

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def __repr__(self) -> str:
        kinds = ", ".join(sorted(m.value for m in self.modalities))
        return f"Embedder(name={self.name!r}, dim={self.dim}, modalities=[{kinds}])"

    # -- encoding ----------------------------------------------------------------------

    def encode(
        self,
        items: Any,
        instruction: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        dim: int | None = None,
        show_progress_bar: bool | None = None,
        convert_to: str = "numpy",
        on_error: str = "raise",
        device: str | torch.device | Sequence[str | torch.device] | None = None,
    ) -> Embeddings | torch.Tensor:
        """Embed ``items`` of any mix of modalities; one row per item, in input order.

        Args:
            items: a list of inputs (str, PIL images, ``mmembed.Text/Image/Video/Document/
                Table/Page``), or a single input (then the result is 1-D).
            instruction: task instruction embedded with every item (VLM2Vec style).
            batch_size: parts per forward pass of a tower.
            normalize: unit-normalise the output vectors.
            dim: keep the first ``dim`` coordinates (Matryoshka), then renormalise.
            show_progress_bar: None shows one when there is more than one batch.
            convert_to: "numpy" (an ``mmembed.Embeddings`` array) or "torch".
            on_error: "raise" raises ``InputError`` naming the first bad item; "skip" fills its
                row with NaN, records it in ``result.errors`` and embeds the rest.
            device: None runs on the model's device; a device, or a list of devices (e.g.
                ``["cuda:0", "cuda:1"]``), runs batches on a copy of the model per device,
                fed by the same worker processes; rows still come back in input order.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        replicas = self.replicas(device)
        single = _is_single(items)
        values = [items] if single else list(items)
        out = torch.full((len(values), dim or self.dim), float("nan"))
        errors: dict[int, InputError] = {}
        if show_progress_bar is None:
            show_progress_bar = len(values) > batch_size
        bar = tqdm(total=len(values), desc="encode", unit="item", disable=not show_progress_bar)

        def embed(replica: Embedder, batch: list[tuple[Sequence[int], Any]]) -> None:
            good, planned = [], []
            for chunk, prepared in batch:
                for index, parts in zip(chunk, prepared.unpack(replica.device), strict=True):
                    if isinstance(parts, InputError):
                        if on_error == "raise":
                            raise parts
                        errors[index] = parts
                    else:
                        good.append(index)
                        planned.append(parts)
            if good:
                vectors = replica._embed_planned(planned, batch_size)
                out[good] = truncate(vectors, dim, normalize).cpu()
            bar.update(sum(len(chunk) for chunk, _ in batch))

        with bar:
            batches = self._prepared_batches(values, instruction, batch_size, replicas[0].device)
            for _ in map_on_replicas(replicas, batches, embed):
                pass
        if errors:
            logger.warning("skipped %d of %d items: %s", len(errors), len(values), _summary(errors))
        return _convert(out, errors, single, convert_to)

    def encode_query(self, items: Any, **kwargs: Any) -> Embeddings | torch.Tensor:
        """``encode`` with the model's query instruction (unless one is given)."""
        kwargs.setdefault("instruction", self.query_instruction)
        return self.encode(items, **kwargs)

    def encode_document(self, items: Any, **kwargs: Any) -> Embeddings | torch.Tensor:
        """``encode`` with the model's document instruction (unless one is given)."""
        kwargs.setdefault("instruction", self.document_instruction)
        return self.encode(items, **kwargs)

    @staticmethod
    def similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor):
        """Cosine similarity matrix ``(len(a), len(b))``, in the type of ``a``."""
        as_numpy = isinstance(a, np.ndarray)
        ta = torch.as_tensor(np.asarray(a) if as_numpy else a, dtype=torch.float32)
        tb = torch.as_tensor(np.asarray(b) if isinstance(b, np.ndarray) else b, dtype=torch.float32)
        ta, tb = torch.atleast_2d(ta), torch.atleast_2d(tb)
        scores = nn.functional.normalize(ta, dim=-1) @ nn.functional.normalize(tb, dim=-1).T
        return scores.numpy() if as_numpy else scores

    # -- internals ---------------------------------------------------------------------

    def plan_cfg(self, device: torch.device | None = None) -> PlanCfg:
        """How items become parts; with a GPU ``device``, pixels stay raw for it to preprocess."""
        text = self.towers["text"] if "text" in self.towers else None
        preprocess = {
            k: t.preprocess for k, t in self.towers.items() if k not in ("text", "sequence")
        }
        kinds = set(self.towers) | ({"video"} if "image" in self.towers else set())
        return PlanCfg(
            preprocess=preprocess,
            split_text=text.split_to_window if text is not None else _no_text,
            table_chunks=self._table_chunks,
            instruction_weight=self.cfg.instruction_weight,
            modalities=frozenset(kinds),
            raw=self._raw_kinds(device or self.device),
        )

    def planner(self, instruction: str | None = None) -> Callable[[Any], Planned]:
        """A function turning one input into a ``Planned`` item that ``encode`` embeds as is.

        For pipelines that decode elsewhere (the index's engine plans in its worker
        processes); raises ``InputError`` for a bad input. Use the same ``instruction`` in
        ``encode``.
        """
        cfg = self.plan_cfg()
        return lambda value: Planned(plan_item(value, instruction, cfg), instruction)

    def _raw_kinds(self, device: torch.device) -> frozenset[str]:
        """Image-like kinds whose resize and normalisation run on ``device`` (``cfg.preprocess_on``)."""
        where = self.cfg.preprocess_on
        if where not in ("auto", "workers", "device"):
            raise ValueError(f"preprocess_on must be auto, workers or device, got {where!r}")
        if where == "workers" or (where == "auto" and device.type != "cuda"):
            return frozenset()
        return frozenset(
            kind
            for kind, tower in self.towers.items()
            if kind in ("image", "page") and getattr(tower, "pixel_steps", None) is not None
        )

    def replicas(self, device: Any) -> list[Embedder]:
        """The model itself on its own device, a copy on each other device asked for."""
        if device is None:
            return [self]
        names = [device] if isinstance(device, (str, torch.device)) else list(device)
        if not names:
            raise ValueError("device must name at least one device")
        replicas: list[Embedder] = []
        for name in names:
            target = torch.device(name)
            if target == self.device and self not in replicas:
                replicas.append(self)
            else:
                replicas.append(copy.deepcopy(self).to(target))
        return replicas

    def _table_chunks(self, table) -> list[str]:
        limits = self.cfg.table_limits
        return table_to_markdown_chunks(
            table, limits.max_rows, limits.max_cols, limits.max_chars, limits.max_cell_chars
        )

    def _prepared_batches(
        self, values: list, instruction: str | None, batch_size: int, device: torch.device
    ) -> Iterator[list[tuple[Sequence[int], Any]]]:
        """Batches of prepared chunks ``(indices, prepared)``; ``prepared.unpack()`` gives parts.

        Plain texts, documents of text only and items planned already come first, planned
        inline (nothing to decode) in chunks of ``TEXT_BATCHES_PER_CHUNK`` batches: the text
        tower tokenizes a chunk in one pass and batches it by token count. Everything else is decoded and preprocessed
        by worker processes (``mmembed.preparation``) in chunks of up to a batch, while the
        towers embed the batch before.
        """
        cfg = self.plan_cfg(device)
        order = sorted(range(len(values)), key=lambda i: _sort_key(values[i]))
        inline = [i for i in order if _plans_inline(values[i])]
        rest = [i for i in order if not _plans_inline(values[i])]

        def plan(index: int) -> list[Part] | InputError:
            try:
                return plan_item(values[index], instruction, cfg)
            except InputError as error:
                return error.at(index)

        step = batch_size * TEXT_BATCHES_PER_CHUNK
        for start in range(0, len(inline), step):
            chunk = inline[start : start + step]
            yield [(chunk, Ready([plan(i) for i in chunk]))]
        workers = resolve_workers(self.cfg.num_workers)
        size = chunk_size(len(rest), batch_size, workers)
        chunks = [rest[s : s + size] for s in range(0, len(rest), size)]
        batch: list[tuple[Sequence[int], Any]] = []
        for chunk, prepared in prepared_chunks(chunks, plan, workers):
            batch.append((chunk, prepared))
            if sum(len(c) for c, _ in batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    @torch.inference_mode()
    def _embed_planned(self, planned: list[list[Part]], batch_size: int) -> torch.Tensor:
        with ExitStack() as runtimes:  # each tower's inference runtime (encoders.runtime)
            for tower in self.towers.values():
                if hasattr(tower, "inference"):
                    runtimes.enter_context(tower.inference())
            parts = embed_parts(self.towers, self.temporal, planned, batch_size, self.device)
        return self.space(self.head(parts))  # (N, D)


def _plans_inline(value: Any) -> bool:
    """Whether ``value`` needs no decoding: a text, a document of texts only, or planned."""
    if isinstance(value, Document):
        return all(isinstance(segment, (str, Text)) for segment in value.segments)
    return isinstance(value, (str, Text, Planned))


def map_on_replicas(
    replicas: list[Embedder], batches: Iterator[Any], fn: Callable[[Embedder, Any], Any]
) -> Iterator[Any]:
    """``fn(replica, batch)`` for every batch, yielded in the calling thread as each ends.

    With several replicas each runs in its own thread and takes the next batch when its
    device is free, so a faster device takes more; torch releases the GIL inside its
    kernels, so devices run in parallel. The first error stops the others and is raised here.
    """
    if len(replicas) == 1:
        for batch in batches:
            yield fn(replicas[0], batch)
        return
    lock, stop, results = threading.Lock(), threading.Event(), queue.Queue()

    def drain(replica: Embedder) -> None:
        try:
            while not stop.is_set():
                with lock:  # the batch iterator (and its worker processes) is shared
                    batch = next(batches, _END)
                if batch is _END:
                    return
                results.put((True, fn(replica, batch)))
        except BaseException as error:  # handed to the calling thread, raised there
            results.put((False, error))
        finally:
            results.put(_END)

    threads = [
        threading.Thread(target=drain, args=(replica,), name=f"mmembed-{replica.device}")
        for replica in replicas
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            result = results.get()
            if result is _END:
                running -= 1
                continue
            ok, value = result
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        for thread in threads:
            thread.join()


_END = object()  # end of the batches, or of one replica's thread


def _is_single(items: Any) -> bool:
    return (
        isinstance(items, (str, *INPUT_TYPES))
        or not isinstance(items, Iterable)
        or (
            hasattr(items, "mode") and hasattr(items, "size")  # a PIL image
        )
        or (isinstance(items, np.ndarray) and items.ndim in (2, 3) and items.dtype == np.uint8)
    )


def _sort_key(value: Any) -> tuple[int, int]:
    """Same-kind items together and texts by length, so batches pad little."""
    if isinstance(value, str):
        return (0, -len(value))
    if isinstance(value, Text):
        return (0, -len(value.text))
    if isinstance(value, INPUT_TYPES):
        return (1 + INPUT_TYPES.index(type(value)), 0)
    if isinstance(value, Planned):
        return (len(INPUT_TYPES) + 2, 0)
    return (len(INPUT_TYPES) + 1, 0)


def _no_text(text: str) -> list[str]:
    raise InputError("this model has no text tower")


def _summary(errors: dict[int, InputError]) -> str:
    shown = "; ".join(str(errors[i]).replace("\n", "\\n") for i in sorted(errors)[:3])
    return shown + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")


def _convert(out: torch.Tensor, errors: dict, single: bool, convert_to: str):
    if convert_to == "torch":
        result = out[0] if single else out
        result.errors = errors
        return result
    array = Embeddings(out.numpy(), errors)
    return array[0] if single else array
