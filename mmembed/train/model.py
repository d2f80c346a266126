"""The model a recipe trains: an ``Embedder``, loaded from ``init`` and saved as ``final/``.

A recipe never builds towers or preprocessing of its own: it starts from the ``Embedder``
that ``init`` names (a zoo name, ``open_clip:ARCH[/TAG]``, a saved folder such as an earlier
run's ``final/``, or ``tiny`` for the small random open_clip model of tests and demos), trains
that embedder's own modules, and writes the same embedder back with ``Embedder.save``, so
``mmembed.load(OUTPUT/final)`` gives exactly what training evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import open_clip
import yaml
from open_clip.transform import PreprocessCfg

from ..embedder import Embedder, EmbedderCfg
from ..encoders.open_clip import OpenCLIPCfg, open_clip_model
from ..models.families import open_clip as open_clip_family
from ..models.registry import load
from ..models.save import RUN_MODEL
from .config import TINY
from .options import TinyClipCfg

logger = logging.getLogger(__name__)

FINAL = RUN_MODEL  # the model folder inside a run's output_dir


def tiny_open_clip(cfg: TinyClipCfg, name: str = TINY) -> Embedder:
    """A random open_clip ``CustomTextCLIP`` of ``cfg``'s shape, as a saveable ``Embedder``."""
    model_cfg = {
        "embed_dim": cfg.embed_dim,
        "custom_text": True,  # separate image / text modules: each tower trains and freezes alone
        "vision_cfg": {
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "width": cfg.width,
            "layers": cfg.layers,
            "head_width": cfg.width // cfg.heads,
        },
        "text_cfg": {
            "context_length": cfg.context_length,
            "width": cfg.width,
            "heads": cfg.heads,
            "layers": cfg.layers,
        },
    }
    build = OpenCLIPCfg(TINY, model_cfg, PreprocessCfg(size=cfg.image_size))
    return open_clip_family.assemble(
        build, None, None, EmbedderCfg(name=name, build=open_clip_family.FAMILY.record(build))
    )


def load_init(init: str, tiny: TinyClipCfg | None = None) -> Embedder:
    """The embedder a recipe starts from, on the CPU in train-ready fp32."""
    if init == TINY:
        return tiny_open_clip(tiny or TinyClipCfg())
    embedder = load(init)  # a run folder without final/ says how to finish it (models.save)
    if embedder.cfg.precision != "fp32":
        raise ValueError(f"init {init}: saved in {embedder.cfg.precision}; recipes train fp32")
    return embedder


def open_clip_train_model(embedder: Embedder, init: str) -> Embedder:
    """``embedder`` with its open_clip model as a ``CustomTextCLIP`` (same weights).

    Plain ``CLIP`` keeps its text layers at the top level of the model, mixed with the image
    tower's; ``CustomTextCLIP`` holds them in ``model.text``, so ``model.visual`` and
    ``model.text`` are the two towers the trainer updates and freezes by name.
    """
    build = embedder.cfg.build
    if build is None or build.family != "open_clip":
        kind = build.family if build else "unknown"
        raise ValueError(
            f"init {init}: this recipe trains open_clip models, not a {kind!r} model "
            "(use e.g. init: ViT-B-32.laion2b_s34b_b79k, open_clip:ViT-B-32 or tiny)"
        )
    model = embedder.towers["image"].model
    if isinstance(model, open_clip.CustomTextCLIP):
        return embedder
    custom = dataclasses.replace(build.cfg, model_cfg={**build.cfg.model_cfg, "custom_text": True})
    converted = open_clip_model(custom)
    state = open_clip.model.convert_to_custom_text_state_dict(model.state_dict())
    converted.load_state_dict(state, strict=True)
    embedder_cfg = dataclasses.replace(embedder.cfg, build=open_clip_family.FAMILY.record(custom))
    return open_clip_family.over(converted, embedder.towers["text"].tokenizer, custom, embedder_cfg)


# -- the model card ----------------------------------------------------------------------------


def write_model_card(folder: Path, card: dict[str, Any]) -> Path:
    """``folder/README.md``: recipe, start model, data, steps, wall time, config and eval figures."""
    lines = [
        f"# {folder.parent.name}/{folder.name}",
        "",
        f"An mmembed model trained by the `{card['recipe']}` recipe from `{card['init']}`.",
        "",
        "```python",
        "import mmembed",
        f'model = mmembed.load("{folder}")',
        "```",
        "",
        "## Training",
        "",
        f"- recipe: `{card['recipe']}`; start model (`init`): `{card['init']}`",
        f"- data: `{card['data']}` ({card['samples']} training rows)",
        f"- steps: {card['steps']} (batch {card['batch_size']}); loss "
        f"{_figure(card['first_loss'])} -> {_figure(card['last_loss'])}",
        f"- wall time: {card['wall_s']:.1f} s on {card['device']}",
        "",
        "## Evaluation (the recipe's own, before and after training)",
        "",
    ]
    evaluation = card.get("evaluation") or {}
    if evaluation:
        names = sorted({k for values in evaluation.values() for k in values if k != "step"})
        lines += ["| when | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for when, values in evaluation.items():
            lines.append(f"| {when} | " + " | ".join(_figure(values.get(n)) for n in names) + " |")
    else:
        lines.append("This recipe measured nothing during training.")
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(card["config"], sort_keys=False)]
    lines += ["```", ""]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    (folder / "training.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return path


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
