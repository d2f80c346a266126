"""Text-only models: a sentence-transformers / transformers checkpoint as the text tower."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...embedder import Embedder, EmbedderCfg
from ...encoders.hf_text import HFTextCfg, HFTextTower
from ...encoders.temporal import TemporalCfg, build_temporal
from ...hub import resolve
from ..family import Family, embedder_cfg, register_family, tuples
from ..zoo import PretrainedCfg


@dataclass(frozen=True)
class HFTextBuildCfg:
    pooling: str  # "mean", "cls" or "last"
    max_tokens: int  # window incl. special tokens


def text_embedder(text: HFTextTower, embedder_cfg: EmbedderCfg) -> Embedder:
    """An embedder of ``text`` alone."""
    temporal = build_temporal(TemporalCfg(), text.dim)
    return Embedder(embedder_cfg, towers={"text": text}, temporal=temporal)


def from_folder(path: Path) -> Embedder:
    """A transformers / sentence-transformers checkpoint folder as a text model."""
    text = HFTextTower(HFTextCfg(path=str(path)))
    build = FAMILY.record(HFTextBuildCfg(text.pooling, text.max_tokens))
    return text_embedder(text, EmbedderCfg(name=str(path), build=build))


def saved_text_tower(folder: Path, record: dict[str, Any]) -> HFTextTower:
    """The text tower a saved folder records (``HFTextTower.save_files``), weights empty."""
    settings = record["settings"]
    return HFTextTower(
        HFTextCfg(
            path=str(folder / record["files"]),
            pooling=settings["pooling"],
            max_tokens=settings["max_tokens"],
            weights=False,
            runtime=settings.get("runtime", HFTextCfg.runtime),  # absent: saved before it
        )
    )


def build(entry: PretrainedCfg, precision: str = "fp32") -> Embedder:
    """A sentence-transformers / transformers text model from the zoo."""
    text = HFTextTower(HFTextCfg(path=str(resolve(entry.source, name=entry.name))))
    return text_embedder(text, embedder_cfg(entry, HFTextBuildCfg(text.pooling, text.max_tokens)))


def rebuild(folder: Path, cfg: Any, towers: dict[str, dict], embedder_cfg: EmbedderCfg) -> Embedder:
    return text_embedder(saved_text_tower(folder, towers["text"]), embedder_cfg)


FAMILY = register_family(
    Family("hf_text", build, rebuild, lambda saved: HFTextBuildCfg(**tuples(saved, HFTextBuildCfg)))
)
