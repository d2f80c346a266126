"""The Ray engine: embedding as a Ray Data pipeline, for folders too big for one process.

::

    items --from_items--> decode (parallel tasks) --> embed (actor pool holding the model)
          --write_parquet--> shards of (id, cache_key, vector, metadata, thumbnail, ...);
                             vector: float32 bytes, b"" when the item failed (see reason)
          --merge--> staging checkpoint --> the index builder writes a generation

Into a Milvus server (``--out milvus://...``) each embedding actor also upserts its own
batches (``RayEngine.writer``); the updater then records them in its ledger without sending
them again.

Decoding and embedding reuse the local engine's functions, so both engines give the same
vectors. Ray is an optional dependency: ``pip install "ray[data]"``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..modality import Modality
from .embed import EmbedSettings, encode_decoded, safe_decode
from .pages import page_planner
from .store import Staged, Staging
from .walk import Item

logger = logging.getLogger(__name__)

DECODE_CPUS = 0.5  # CPUs reserved per decode task
# Shard columns; vector holds float32 bytes (b"" when the item failed, see reason).
SHARD_CONFIG = "config.json"  # the EmbedSettings the shards were made with
# stored: the item's id when the actor stored it in a vector engine, else "".
SHARD_COLUMNS = (
    "id",
    "cache_key",
    "vector",
    "metadata",
    "thumbnail",
    "snippet",
    "reason",
    "stored",
)


# Stores items in the engine from an embedding actor; returns the ids it stored.
Writer = Callable[[list[tuple[Item, Staged]]], list[str]]


def ray_engine(
    embedder_factory: Callable[[], Any],
    settings: EmbedSettings,
    batch_size: int = 32,
    num_actors: int = 1,
    shard_dir: str | Path = "ray-shards",
    gpus_per_actor: float = 0,
) -> RayEngine:
    """An engine running decode tasks and an embedding actor pool on Ray.

    Args:
        embedder_factory: builds the Embedder inside each actor (picklable, e.g.
            ``functools.partial(mmembed.load, "mmembed-mini")``).
        settings: model, instruction and dim, as for the local engine.
        batch_size: items per decode task batch and per ``encode`` call.
        num_actors: embedding actors (each holds one copy of the model).
        shard_dir: folder for the Parquet shards (replaced on each run).
        gpus_per_actor: GPUs Ray reserves for each embedding actor (1 for a CUDA model, so a
            cluster spreads the actors over its GPUs).
    """
    return RayEngine(
        embedder_factory, settings, batch_size, num_actors, Path(shard_dir), gpus_per_actor
    )


@dataclasses.dataclass
class RayEngine:
    """The engine ``ray_engine`` makes (an ``Engine``: call it with items and the checkpoint).

    Attributes:
        writer: when set (by the vector-engine updater), each embedding actor stores its own
            batches through it, so embedding and storage scale out together.
        stored: ids of the items the actors stored in the last run (their rows still reach
            the checkpoint, and the updater records them in its ledger).
    """

    embedder_factory: Callable[[], Any]
    settings: EmbedSettings
    batch_size: int
    num_actors: int
    shard_dir: Path
    gpus_per_actor: float
    writer: Writer | None = None
    stored: set[str] = dataclasses.field(default_factory=set)

    def __call__(self, items: Sequence[Item], staging: Staging) -> None:
        self.stored = set()
        if not items:
            return
        import ray
        import ray.data

        if not ray.is_initialized():
            ray.init(log_to_driver=False)
        shards = self.shard_dir
        shutil.rmtree(shards, ignore_errors=True)
        shards.mkdir(parents=True)
        (shards / SHARD_CONFIG).write_text(json.dumps(self.settings.to_dict(), sort_keys=True))
        rows = [{"item": json.dumps(_item_to_dict(item))} for item in items]
        blocks = max(1, min(64, len(rows) // self.batch_size))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        cluster_cpus = ray.cluster_resources().get("CPU", 1.0)
        actors, actor_cpus = actor_resources(cluster_cpus, self.num_actors)
        dataset = dataset.map_batches(
            decode_batch, batch_size=self.batch_size, batch_format="numpy", num_cpus=DECODE_CPUS
        )
        dataset = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "factory": self.embedder_factory,
                "settings": self.settings.to_dict(),
                "writer": self.writer,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=self.batch_size,
            batch_format="numpy",
            num_cpus=actor_cpus,
            num_gpus=self.gpus_per_actor,
        )
        dataset.write_parquet(str(shards))
        merged = merge_shards(shards, staging, stored=self.stored)
        logger.info(
            "merged %d embedded items from %s (%d stored by the actors)",
            merged,
            shards,
            len(self.stored),
        )
        shutil.rmtree(shards, ignore_errors=True)


def actor_resources(cluster_cpus: float, num_actors: int) -> tuple[int, float]:
    """Embedding actors and CPUs per actor that leave room for decode tasks.

    Actors hold their CPUs for the whole run; if they took every CPU, no decode task
    could start and the pipeline would wait forever.
    """
    actors = max(1, min(num_actors, int(cluster_cpus - DECODE_CPUS)))
    cpus = min(1.0, (cluster_cpus - DECODE_CPUS) / actors)
    if actors < num_actors or cpus < 1.0:
        logger.info("%g CPUs: %d embedding actor(s) of %.2g CPU each", cluster_cpus, actors, cpus)
    return actors, max(cpus, 0.1)


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Ray task: decode items; inputs travel pickled (pixels, frames and tables loaded).

    Every column holds plain bytes or strings (``b""`` for none), so all blocks share one
    Arrow schema.
    """
    columns: dict[str, list] = {
        name: [] for name in SHARD_COLUMNS if name not in ("vector", "stored")
    }
    columns["payload"] = []
    columns["item"] = list(batch["item"])  # for an actor that stores the items itself
    for text in batch["item"]:
        item = _item_from_dict(json.loads(text))
        result = safe_decode(item)
        decoded = not isinstance(result, InputError)
        columns["id"].append(item.id)
        columns["cache_key"].append(item.cache_key)
        columns["metadata"].append(json.dumps(item.metadata, sort_keys=True))
        columns["payload"].append(pickle.dumps(result.input) if decoded else b"")
        columns["thumbnail"].append((result.thumbnail or b"") if decoded else b"")
        columns["snippet"].append(result.snippet if decoded else "")
        columns["reason"].append("" if decoded else result.reason)
    return columns


class EmbedActor:
    """Ray actor: holds one Embedder and embeds decoded batches (and stores them through
    ``writer`` when it is given)."""

    def __init__(
        self, factory: Callable[[], Any], settings: dict[str, Any], writer: Writer | None = None
    ):
        self.embedder = factory()
        self.settings = EmbedSettings(**settings)
        self.writer = writer
        # Planned here, as the local engine's workers plan: a page read to text keeps its lines.
        model = self.embedder.load() if hasattr(self.embedder, "load") else self.embedder
        planner = hasattr(model, "planner")
        self.plan = page_planner(model, self.settings.instruction) if planner else None

    def _planned(self, decoded: Any) -> Any:
        if self.plan is None or isinstance(decoded, InputError):
            return decoded
        try:
            return self.plan(decoded)
        except InputError as error:
            return error

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from .decode import Decoded

        decoded = [
            Decoded(pickle.loads(payload), thumbnail or None, str(snippet))
            if payload
            else InputError(str(reason))
            for payload, thumbnail, snippet, reason in zip(
                batch["payload"], batch["thumbnail"], batch["snippet"], batch["reason"], strict=True
            )
        ]
        entries = encode_decoded(self.embedder, [self._planned(d) for d in decoded], self.settings)
        out = {name: list(batch[name]) for name in SHARD_COLUMNS if name in batch}
        out["vector"] = [
            b"" if entry.vector is None else entry.vector.tobytes() for entry in entries
        ]
        out["reason"] = [entry.reason for entry in entries]
        out["snippet"] = [entry.snippet or "" for entry in entries]  # a page read: its lines
        out["stored"] = [""] * len(entries)
        if self.writer is not None:
            items = [_item_from_dict(json.loads(text)) for text in batch["item"]]
            pairs = [
                (item, entry)
                for item, entry in zip(items, entries, strict=True)
                if entry.vector is not None
            ]
            stored = set(self.writer(pairs))
            out["stored"] = [item.id if item.id in stored else "" for item in items]
        return out


def salvage_shards(shards: Path, staging: Staging, settings: EmbedSettings) -> int:
    """Merge the complete shards of a killed Ray run (made with the same settings) into the
    staging checkpoint, then delete them; returns the rows recovered."""
    if not shards.is_dir():
        return 0
    recovered = 0
    try:
        stored = json.loads((shards / SHARD_CONFIG).read_text())
    except (OSError, ValueError):
        stored = None
    if stored == settings.to_dict():
        recovered = merge_shards(shards, staging, skip_broken=True)
        logger.info("recovered %d embedded items from an interrupted Ray run", recovered)
    shutil.rmtree(shards, ignore_errors=True)
    return recovered


def merge_shards(
    shards: Path,
    staging: Staging,
    chunk: int = 1024,
    skip_broken: bool = False,
    stored: set[str] | None = None,
) -> int:
    """Copy the Parquet shards' rows into the staging checkpoint; returns the row count.

    With ``skip_broken``, a shard that cannot be read (cut short by a kill) is skipped;
    ``stored`` collects the ids of the items the actors stored in a vector engine.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = 0
    for path in sorted(shards.glob("*.parquet")):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid):
            if not skip_broken:
                raise
            logger.info("skipping unreadable shard %s", path)
            continue
        if "cache_key" not in table.column_names:  # written by an older mmembed
            logger.info("skipping shard %s of an older format", path)
            continue
        for start in range(0, table.num_rows, chunk):
            rows = table.slice(start, chunk).to_pylist()
            staging.put(
                {
                    row["cache_key"]: Staged(
                        np.frombuffer(row["vector"], np.float32) if row["vector"] else None,
                        row["snippet"] or "",
                        row["thumbnail"] or None,
                        row["reason"] or "",
                    )
                    for row in rows
                }
            )
            count += len(rows)
            if stored is not None:
                stored.update(row["stored"] for row in rows if row.get("stored"))
    return count


def _item_to_dict(item: Item) -> dict[str, Any]:
    """A JSON-ready item; an in-memory input (``Index.build([Page(picture)])``) travels pickled."""
    data = dataclasses.asdict(dataclasses.replace(item, value=None))
    data["modality"] = item.modality.value if item.modality else None
    if item.value is not None:
        data["value"] = base64.b64encode(pickle.dumps(item.value)).decode("ascii")
    return data


def _item_from_dict(data: dict[str, Any]) -> Item:
    modality = Modality(data["modality"]) if data["modality"] else None
    value = pickle.loads(base64.b64decode(data["value"])) if data.get("value") else None
    return Item(**{**data, "modality": modality, "value": value})
