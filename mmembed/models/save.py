"""Save an ``Embedder`` to a folder and load it back, bit for bit, with no network.

Layout of a saved folder::

    mmembed_config.json    format version, builder and its typed config, every stage, EmbedderCfg
    model.safetensors      the whole state dict (tensors shared between towers stored once)
    towers/<kind>/         each tower's non-weight files: tokenizer, model config, processor

Loading rebuilds every stage from the config with empty weights (no Hub, no pip-package
weights), then loads ``model.safetensors`` strictly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from ..embedder import Build, Embedder, EmbedderCfg
from ..encoders.base import SavesFiles
from ..encoders.temporal import TemporalAttentionPool, TemporalCfg, build_temporal
from ..heads.fusion import WeightedSumHead
from ..heads.learned import LearnedFusionHead, LearnedHeadCfg
from ..hub.atomic import staged_folder
from ..processors.table import TableLimits
from ..space.shared import SharedSpace
from .family import cfg_json, family_of

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "mmembed_config.json"
WEIGHTS_NAME = "model.safetensors"


# -- save ----------------------------------------------------------------------------------------


def save_embedder(embedder: Embedder, directory: str | os.PathLike) -> Path:
    """Write ``embedder`` to ``directory`` (created; files of an earlier save are replaced).

    The folder is written next to its destination and renamed into place, so an interrupted
    save never leaves a half-written model where ``mmembed.load`` would find it.
    """
    build = embedder.cfg.build
    if build is None:
        raise ValueError(
            f"{embedder.name}: this embedder was not made by a tower family, so it cannot be "
            "rebuilt; build it with mmembed.load (see mmembed.models.family)"
        )
    family_of(build.family)  # an unregistered family could not load it again
    target = Path(directory).absolute()
    with staged_folder(target) as staging:
        stages = {
            kind: _save_tower(tower, staging / "towers" / kind, kind)
            for kind, tower in embedder.towers.items()
        }
        config = {
            "format_version": FORMAT_VERSION,
            "builder": build.family,
            "builder_cfg": cfg_json(build.cfg),
            "stages": {
                "towers": stages,
                "temporal": _temporal_record(embedder.temporal),
                "head": _head_record(embedder.head),
                "space": _space_record(embedder.space),
            },
            "embedder": cfg_json(_without_build(embedder.cfg)),
        }
        save_model(embedder, str(staging / WEIGHTS_NAME))
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        _apply_umask(staging)
    logger.info("saved %s to %s", embedder.name, target)
    return target


def _apply_umask(folder: Path) -> None:
    """Give the staged folder the permissions a plain mkdir / open would have (mkdtemp: 0700)."""
    umask = _current_umask()
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: assume the usual default
        return 0o022
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return 0o022


def _save_tower(tower: nn.Module, folder: Path, kind: str) -> dict[str, Any]:
    """The tower's record for the config; a tower with files writes them itself (pattern 12)."""
    record: dict[str, Any] = {"class": _qualname(tower)}
    if isinstance(tower, SavesFiles):
        record["settings"] = tower.save_files(folder)
    if folder.is_dir():
        record["files"] = f"towers/{kind}"
    return record


def _without_build(cfg: EmbedderCfg) -> dict[str, Any]:
    """The embedder settings, less the build record (saved as "builder" and "builder_cfg")."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "build"}


def _temporal_record(temporal: nn.Module) -> dict[str, Any]:
    if isinstance(temporal, TemporalAttentionPool):
        cfg = TemporalCfg(
            kind="attention",
            num_heads=temporal.attention.num_heads,
            max_frames=temporal.positions.shape[0],
        )
    else:
        cfg = TemporalCfg(kind="mean")
    return {"class": _qualname(temporal), "cfg": asdict(cfg)}


def _head_record(head: nn.Module) -> dict[str, Any]:
    if type(head) is LearnedFusionHead:
        return {"class": _qualname(head), "cfg": asdict(head.cfg)}
    if type(head) is not WeightedSumHead:
        raise ValueError(f"saving a {_qualname(head)} head is not supported yet")
    return {"class": _qualname(head)}


def _space_record(space: nn.Module) -> dict[str, Any]:
    if type(space) is not SharedSpace:
        raise ValueError(f"saving a {_qualname(space)} space is not supported yet")
    projection = space.projection
    if isinstance(projection, nn.Identity):
        return {"class": _qualname(space), "projection": None}
    if type(projection) is nn.Linear:
        return {
            "class": _qualname(space),
            "projection": {
                "in_features": projection.in_features,
                "out_features": projection.out_features,
                "bias": projection.bias is not None,
            },
        }
    raise ValueError(f"saving a {_qualname(projection)} projection is not supported yet")


# -- load ----------------------------------------------------------------------------------------

RUN_MODEL = "final"  # where ``mmembed train`` writes the model inside a run's output folder


def check_run_folder(folder: Path) -> None:
    """Fail clearly when ``folder`` is a training run rather than a model (no config of its own).

    A finished run holds its model in ``final/``; a run without one stopped early, and the
    message gives the command that continues it.
    """
    if (folder / CONFIG_NAME).is_file() or not (
        (folder / "checkpoints").is_dir() or (folder / "metrics.jsonl").is_file()
    ):
        return
    if (folder / RUN_MODEL / CONFIG_NAME).is_file():
        raise ValueError(f"{folder} is a training run, not a model: load {folder / RUN_MODEL}")
    config = folder / "config.yaml"
    resume = (
        f"mmembed train {config} --resume" if config.is_file() else "mmembed train ... --resume"
    )
    raise ValueError(
        f"{folder} is a training run without {RUN_MODEL}/{CONFIG_NAME} (it stopped before the "
        f"end); finish it with: {resume}"
    )


def load_saved(directory: str | os.PathLike) -> Embedder:
    """Rebuild the embedder saved in ``directory`` and load its weights (no network)."""
    folder = Path(directory)
    config = json.loads((folder / CONFIG_NAME).read_text())
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{folder / CONFIG_NAME}: format_version is {version!r}, but this mmembed reads "
            f"format_version {FORMAT_VERSION} or older; upgrade mmembed to load it"
        )
    family = family_of(config["builder"])
    cfg = family.read_cfg(config["builder_cfg"])
    embedder_cfg = _embedder_cfg(config["embedder"], Build(family.name, cfg))
    embedder_cfg.name = str(directory)  # the name it was loaded by: an index reloads it so
    stages = config["stages"]
    embedder = family.rebuild(folder, cfg, stages["towers"], embedder_cfg)
    _restore_stages(embedder, stages)
    if embedder_cfg.precision != "fp32":
        embedder.set_precision(embedder_cfg.precision)
    load_model(embedder, str(folder / WEIGHTS_NAME), strict=True)
    return embedder.eval()


def _embedder_cfg(saved: dict[str, Any], build: Build) -> EmbedderCfg:
    saved = dict(saved)
    saved["table_limits"] = TableLimits(**saved["table_limits"])
    # Worker processes fit the machine that loads the model, not the one that saved it.
    saved.pop("num_workers", None)
    saved.pop("extra", None)  # folders saved before Build held it as extra["build"]
    return EmbedderCfg(**saved, build=build)


def _restore_stages(embedder: Embedder, stages: dict[str, Any]) -> None:
    temporal = TemporalCfg(**stages["temporal"]["cfg"])
    if temporal.kind != "mean":
        embedder.temporal = build_temporal(temporal, embedder.dim)
    head = stages["head"]
    if head["class"] == _qualname_of(LearnedFusionHead):
        embedder.head = LearnedFusionHead(LearnedHeadCfg(**head["cfg"]))
    elif head["class"] != _qualname_of(WeightedSumHead):
        raise ValueError(f"stages.head.class: unknown head {head['class']!r}")
    projection = stages["space"].get("projection")
    if projection is not None:
        embedder.space = SharedSpace(
            nn.Linear(projection["in_features"], projection["out_features"], projection["bias"])
        )


# -- Hugging Face Hub ----------------------------------------------------------------------------


def push_to_hub(
    embedder: Embedder, repo_id: str, *, private: bool | None = None, token: str | None = None
) -> str:
    """Save ``embedder`` and upload the folder to the Hub repo ``repo_id``; returns its URL.

    Download it again with ``huggingface_hub.snapshot_download(repo_id)`` and pass the folder
    to ``mmembed.load``.
    """
    from huggingface_hub import HfApi

    from ..hub import library_version

    api = HfApi(token=token, library_name="mmembed", library_version=library_version())
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_embedder(embedder, Path(tmp) / "model")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=f"Upload {embedder.name}"
        )
    return str(commit.commit_url) if hasattr(commit, "commit_url") else str(commit)


# -- helpers ---------------------------------------------------------------------------------------


def _qualname(obj: object) -> str:
    return _qualname_of(type(obj))


def _qualname_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
