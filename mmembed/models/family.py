"""Tower families: each registers one record saying how its zoo entries build, which typed
config describes a built model, and how a saved folder rebuilds it.

A family lives in one module of ``mmembed.models.families`` (every module there is imported
on first use), so adding one takes that module plus its zoo entries in ``models.zoo``. Each
tower writes its own non-weight files (``encoders.base.SavesFiles``); ``models.save`` only
loops over the towers and this record.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..embedder import Build, Embedder, EmbedderCfg
from .zoo import PretrainedCfg

# (saved folder, build config, tower records of mmembed_config.json, embedder config) ->
# the embedder with empty weights; models.save then loads model.safetensors into it.
Rebuild = Callable[[Path, Any, dict[str, dict[str, Any]], EmbedderCfg], Embedder]


@dataclass(frozen=True)
class Family:
    """One tower family."""

    name: str  # zoo entries' ``builder`` and the "builder" of mmembed_config.json
    # (zoo entry, precision, **options) -> the embedder, weights loaded. ``precision`` lets a
    # family load straight in bf16 (a 7B VLM); mmembed.load casts the others afterwards.
    build: Callable[..., Embedder]
    rebuild: Rebuild  # a saved folder -> the embedder, weights not loaded
    # mmembed_config.json's "builder_cfg" -> the typed build config (``Build.cfg``), reading
    # folders saved by earlier versions too; a function, so open_clip loads only when used.
    read_cfg: Callable[[dict[str, Any]], Any]
    options: tuple[str, ...] = ()  # options ``mmembed.load(name, **options)`` passes to build

    def record(self, cfg: Any) -> Build:
        """The ``EmbedderCfg.build`` of an embedder this family built with ``cfg``."""
        if not is_dataclass(cfg):
            raise TypeError(f"{self.name}: the build config must be a dataclass, not {cfg!r}")
        return Build(self.name, cfg)


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family``; a name is registered once."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"tower family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove the family ``name`` (tests register temporary ones)."""
    _FAMILIES.pop(name, None)


def family_of(name: str) -> Family:
    """The family called ``name`` (``ValueError`` naming the known ones)."""
    _import_families()
    if name not in _FAMILIES:
        raise ValueError(f"unknown tower family {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def embedder_cfg(entry: PretrainedCfg, cfg: Any) -> EmbedderCfg:
    """The ``EmbedderCfg`` of a model built from zoo ``entry`` with build config ``cfg``."""
    return EmbedderCfg(
        name=entry.name,
        query_instruction=entry.query_instruction,
        document_instruction=entry.document_instruction,
        build=family_of(entry.builder).record(cfg),
    )


def cfg_json(cfg: Any) -> Any:
    """A config as JSON values (dataclasses as dicts, tuples as lists, paths as strings)."""
    return _jsonable(cfg)


def tuples(saved: dict[str, Any], cfg_type: type | None = None) -> dict[str, Any]:
    """JSON lists back to the tuples typed configs declare; keys ``cfg_type`` lacks dropped."""
    names = {f.name for f in fields(cfg_type)} if cfg_type is not None else set(saved)
    return {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in saved.items()
        if key in names
    }


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _import_families() -> None:
    """Import every module of ``models.families``; each registers its family."""
    from . import families

    for module in pkgutil.iter_modules(families.__path__):
        importlib.import_module(f"{families.__name__}.{module.name}")
