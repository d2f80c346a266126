"""Training pairs: readers for the supported formats and a resumable, sharded batch order.

Readers turn files into :class:`PairRecord` rows (texts and image paths, no tensors); a
task's collate turns records into tower inputs. Rows that cannot be used are skipped and
counted per reason, never fatal; images are only opened in collate, where a failure skips
the sample. The batch order depends on the seed and epoch only, so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..modality import IMAGE_EXTENSIONS
from .config import DataConfig

logger = logging.getLogger(__name__)

MMEB_COLUMNS = ("qry", "qry_image_path", "pos_text", "pos_image_path")


@dataclass(frozen=True, slots=True)
class PairSide:
    """One side of a pair: a text, an image, or both (an interleaved query)."""

    text: str | None = None
    image: str | None = None  # path of an image file

    def is_empty(self) -> bool:
        return not self.text and not self.image


@dataclass(frozen=True, slots=True)
class PairRecord:
    """A query, its matching document, and optional hard-negative documents."""

    query: PairSide
    positive: PairSide
    negatives: tuple[PairSide, ...] = ()


@dataclass
class PairDataset(Sequence[PairRecord]):
    """Records read from one source, with the count of rows skipped per reason."""

    records: list[PairRecord]
    skipped: Counter = field(default_factory=Counter)
    source: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> PairRecord:  # type: ignore[override]
        return self.records[index]

    def log_summary(self) -> None:
        """Say how many rows were kept and why the others were dropped."""
        total = sum(self.skipped.values())
        logger.info("%s: %d pairs, %d rows skipped", self.source, len(self.records), total)
        for reason, count in self.skipped.most_common():
            logger.warning("%s: skipped %d rows: %s", self.source, count, reason)


@dataclass(frozen=True, slots=True)
class SampleKey:
    """What the sampler yields: a row and the seed of its augmentations."""

    index: int  # row in the dataset
    seed: int  # seeds this sample's random augmentations, independent of workers and resumes


@dataclass(frozen=True, slots=True)
class Sample:
    """What a task's collate receives: a record and the seed for its augmentations."""

    index: int
    record: PairRecord
    seed: int


class KeyedDataset(torch.utils.data.Dataset):
    """Looks up records by :class:`SampleKey`, so augmentation seeds travel with the index."""

    def __init__(self, records: Sequence[PairRecord]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: SampleKey) -> Sample:
        return Sample(key.index, self.records[key.index], key.seed)


class ResumableBatchSampler(torch.utils.data.Sampler):
    """This process's share of each global batch of one epoch, from a given batch on.

    The epoch's order is a permutation seeded by ``seed + epoch``; global batch ``b`` is split
    into ``world_size`` equal slices in rank order, so the processes together see exactly the
    batch one process would. Incomplete last batches are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if global_batch % world_size:
            raise ValueError(
                f"batch_size {global_batch} is not divisible by {world_size} processes"
            )
        if num_samples < global_batch:
            raise ValueError(f"{num_samples} training pairs cannot fill a batch of {global_batch}")
        self.num_samples, self.global_batch = num_samples, global_batch
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.rank, self.world_size = rank, world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        local = self.global_batch // self.world_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * self.global_batch + self.rank * local
            yield [
                SampleKey(order[pos], sample_seed(self.seed, self.epoch, pos))
                for pos in range(first, first + local)
            ]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A seed for the sample at ``position`` of ``epoch``'s order: new augmentations every epoch."""
    return (seed * 1_000_003 + epoch * 10_000_019 + position) % (2**63 - 1)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV, Parquet, JSON or JSONL file as a DataFrame of strings (missing: None)."""
    path = Path(path)
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
        ".tsv": lambda p: pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False),
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
        ".json": lambda p: pd.read_json(p, dtype=False),
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported table format (use one of {sorted(readers)})")
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    frame = reader(path)
    return frame.astype(object).where(frame.notna(), None)


def _text(value: Any) -> str | None:
    """A cell as stripped text, or None when empty or missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _texts(value: Any) -> list[str]:
    """A cell holding one value or a list of values (MMEB negatives may be either)."""
    if isinstance(value, list | tuple) or hasattr(value, "tolist"):
        values = value.tolist() if hasattr(value, "tolist") else list(value)
        return [t for t in (_text(v) for v in values) if t]
    text = _text(value)
    return [text] if text else []


def _resolve(path: str | None, root: Path) -> str | None:
    """An image path made absolute against ``root`` when relative."""
    if not path:
        return None
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else root / candidate)


def _root(config: DataConfig) -> Path:
    base = Path(config.path)
    return (
        Path(config.image_root) if config.image_root else (base if base.is_dir() else base.parent)
    )


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")


def read_mmeb(config: DataConfig) -> PairDataset:
    """MMEB-train rows: ``qry``, ``qry_image_path``, ``pos_text``, ``pos_image_path`` and
    optional ``neg_text``, ``neg_image_path`` (a value or a list of values each)."""
    frame, root = read_table(config.path), _root(config)
    _require_columns(frame, MMEB_COLUMNS, config.path)
    dataset = PairDataset([], source=config.path)
    has_negatives = "neg_text" in frame.columns or "neg_image_path" in frame.columns
    for row in frame.to_dict("records"):
        query = PairSide(_text(row["qry"]), _resolve(_text(row["qry_image_path"]), root))
        positive = PairSide(_text(row["pos_text"]), _resolve(_text(row["pos_image_path"]), root))
        negatives: tuple[PairSide, ...] = ()
        if config.num_negatives and has_negatives:
            texts, images = _texts(row.get("neg_text")), _texts(row.get("neg_image_path"))
            count = max(len(texts), len(images))
            texts, images = (
                texts + [None] * (count - len(texts)),
                images + [None] * (count - len(images)),
            )
            negatives = tuple(
                PairSide(t, _resolve(i, root)) for t, i in zip(texts, images, strict=True)
            )
        _add(dataset, query, positive, negatives, config.num_negatives)
    return dataset


def read_image_captions(config: DataConfig) -> PairDataset:
    """Image-caption pairs (query: image, positive: caption) from a table, or from a folder of
    images each with a sidecar ``.txt`` caption of the same stem."""
    source = Path(config.path)
    dataset = PairDataset([], source=config.path)
    if source.is_dir():
        for image in sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
            caption_file = image.with_suffix(".txt")
            caption = (
                _text(caption_file.read_text(encoding="utf-8")) if caption_file.is_file() else None
            )
            _add(dataset, PairSide(image=str(image)), PairSide(text=caption), (), 0)
        return dataset
    frame, root = read_table(source), _root(config)
    _require_columns(frame, [config.image_column, config.caption_column], config.path)
    for row in frame.to_dict("records"):
        image = _resolve(_text(row[config.image_column]), root)
        _add(
            dataset, PairSide(image=image), PairSide(text=_text(row[config.caption_column])), (), 0
        )
    return dataset


def read_text_pairs(config: DataConfig) -> PairDataset:
    """Plain text pairs: a query column, a positive column and an optional negative column."""
    frame = read_table(config.path)
    columns = [config.query_column, config.positive_column]
    if config.negative_column:
        columns.append(config.negative_column)
    _require_columns(frame, columns, config.path)
    dataset = PairDataset([], source=config.path)
    for row in frame.to_dict("records"):
        negatives = ()
        if config.negative_column and config.num_negatives:
            negatives = tuple(PairSide(text=t) for t in _texts(row[config.negative_column]))
        query, positive = (
            PairSide(text=_text(row[config.query_column])),
            PairSide(text=_text(row[config.positive_column])),
        )
        _add(dataset, query, positive, negatives, config.num_negatives)
    return dataset


def _add(
    dataset: PairDataset,
    query: PairSide,
    positive: PairSide,
    negatives: tuple[PairSide, ...],
    num_negatives: int,
) -> None:
    """Append a record, or count why it cannot be used."""
    negatives = tuple(n for n in negatives if not n.is_empty())
    if query.is_empty():
        dataset.skipped["empty query"] += 1
    elif positive.is_empty():
        dataset.skipped["empty positive"] += 1
    elif len(negatives) < num_negatives:
        dataset.skipped[f"fewer than {num_negatives} hard negatives"] += 1
    else:
        dataset.records.append(PairRecord(query, positive, negatives[:num_negatives]))


def read_demo_photos(config: DataConfig) -> PairDataset:
    """Captioned real photos from scikit-image, written to ``config.path`` on first use."""
    from .demo_data import write_demo_photos

    return _read_demo(write_demo_photos(config.path))


def read_demo_crops(config: DataConfig) -> PairDataset:
    """Four crops of each demo photo (captioned like it), written on first use."""
    from .demo_data import write_demo_crops

    return _read_demo(write_demo_crops(config.path))


def read_demo_heldout(config: DataConfig) -> PairDataset:
    """Captioned scikit-image photos that the other demo sets lack, written on first use."""
    from .demo_data import write_heldout_photos

    return _read_demo(write_heldout_photos(config.path))


def read_demo_videos(config: DataConfig) -> PairDataset:
    """Pan-and-zoom clips of the demo photos plus still photos, written on first use."""
    from .demo_data import write_demo_videos

    return _read_demo(write_demo_videos(config.path))


def read_demo_mmeb(config: DataConfig) -> PairDataset:
    """MMEB-train rows over real photos with hard negatives, written on first use."""
    from .demo_data import write_demo_mmeb

    table = write_demo_mmeb(config.path)
    return read_mmeb(DataConfig(format="mmeb", path=str(table), num_negatives=config.num_negatives))


def _read_demo(table: Path) -> PairDataset:
    return read_image_captions(DataConfig(format="image_caption", path=str(table)))


READERS: dict[str, Callable[[DataConfig], PairDataset]] = {
    "mmeb": read_mmeb,
    "image_caption": read_image_captions,
    "text_pairs": read_text_pairs,
    "demo_photos": read_demo_photos,
    "demo_crops": read_demo_crops,
    "demo_heldout": read_demo_heldout,
    "demo_videos": read_demo_videos,
    "demo_mmeb": read_demo_mmeb,
}


def open_dataset(config: DataConfig) -> PairDataset:
    """Read the pairs a :class:`DataConfig` names and log what was skipped."""
    if config.format not in READERS:
        raise ValueError(f"unknown data format {config.format!r}; use one of {sorted(READERS)}")
    dataset = READERS[config.format](config)
    dataset.log_summary()
    return dataset
