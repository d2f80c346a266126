"""What a VLM embedder reads: each family's prompt string and the images it is given.

Two prompt styles, each the byte-exact string its reference code hands the processor:

* ``"vlm2vec"`` (VLM2Vec V1 and V2, ``src/model/processor.py`` ``process_input_text``): the
  visual placeholder where the image or video stands, then the instruction, then the text:
  ``"<|image_pad|> Represent the given image with the following question: What is it?"``.
* ``"qwen_chat"`` (Qwen3-VL-Embedding, ``src/models/qwen3_vl_embedding.py``
  ``format_model_input``): a chat whose system message is the instruction (a final full stop
  added when it ends without punctuation; ``"Represent the user's input."`` when there is
  none) and whose user message holds the images, then the texts; the generation prompt
  closes it, and the last token of that is the embedding.

Images are prepared as each reference prepares them before its processor: VLM2Vec's Qwen2-VL
collator squashes an image with a side under 28 pixels to 56x56, and V1's evaluation squashes
every image to 1344x1344 first; Qwen3-VL-Embedding resizes each image itself (``qwen_vl_utils``'
``fetch_image``: sides rounded to multiples of 32 inside a pixel budget, PIL's default filter)
and tells the processor not to resize again; it prepares a video's frames the same way
(``fetch_video`` on a frame list) and writes their metadata itself.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tv

from ..errors import InputError
from ..processors.sequence import Frames, SequenceItem

Prompt = tuple[str, list[PILImage.Image], list[list[PILImage.Image]]]


@dataclass(frozen=True)
class PromptCfg:
    """How an item is written into a prompt."""

    image_token: str  # what stands for one image ("<|image_pad|>", or the whole vision span)
    video_token: str | None  # same for a video's frames; None: the model reads no video here
    separator: str = " "  # vlm2vec: between two pieces that meet without whitespace
    style: str = "vlm2vec"  # key of PROMPT_STYLES
    default_instruction: str | None = None  # qwen_chat: the system message of an item without one


def format_prompt(item: SequenceItem, prompt: PromptCfg) -> Prompt:
    """The prompt of ``item`` in ``prompt.style``, with its images and videos in prompt order."""
    return PROMPT_STYLES[prompt.style](item, prompt)


def vlm2vec_prompt(item: SequenceItem, prompt: PromptCfg) -> Prompt:
    r"""VLM2Vec's prompt for one item, with its images and videos in prompt order.

    Visual segments become placeholder tokens where they stand; the instruction goes right
    before the first text segment (after any leading images), or last when there is no text.
    Pieces are joined with ``prompt.separator`` only where they meet without whitespace, so a
    text that carries its own ``\n`` around a placeholder (MMEB's ``"<|image_1|>\nRepresent
    ...\n"``) reaches the processor byte for byte, as VLM2Vec passes it.
    """
    pieces: list[str] = []
    images: list[PILImage.Image] = []
    videos: list[list[PILImage.Image]] = []
    instruction = item.instruction
    for segment in item.segments:
        if isinstance(segment, Frames):
            if prompt.video_token is None:
                raise InputError("this VLM does not read videos")
            pieces.append(prompt.video_token)
            videos.append(list(segment.frames))
        elif isinstance(segment, PILImage.Image):
            pieces.append(prompt.image_token)
            images.append(segment)
        else:
            pieces.append(f"{instruction} {segment}" if instruction else segment)
            instruction = None
    if instruction:
        pieces.append(instruction)
    text = ""
    for piece in pieces:
        meets_whitespace = not text or text[-1].isspace() or piece[:1].isspace()
        text += piece if meets_whitespace else prompt.separator + piece
    return text, images, videos


def qwen_chat_prompt(item: SequenceItem, prompt: PromptCfg) -> Prompt:
    """Qwen3-VL-Embedding's chat prompt: instruction as the system message, then videos,
    images and texts.

    The reference takes an item as ``{"text", "image", "video"}`` and writes videos, then
    images, then texts, so an interleaved document reaches the model in that order too. An
    item with no content is the text ``"NULL"``, as in the reference.
    """
    images: list[PILImage.Image] = []
    videos: list[list[PILImage.Image]] = []
    texts: list[str] = []
    for segment in item.segments:
        if isinstance(segment, Frames):
            if prompt.video_token is None:
                raise InputError("this VLM does not read videos")
            videos.append(list(segment.frames))
        elif isinstance(segment, PILImage.Image):
            images.append(segment)
        else:
            texts.append(segment)
    visual = prompt.video_token * len(videos) + prompt.image_token * len(images)
    user = visual + "".join(texts) if visual or texts else "NULL"
    system = _punctuated(item.instruction) or prompt.default_instruction or ""
    text = (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    return text, images, videos


def _punctuated(instruction: str | None) -> str:
    """The instruction stripped, with a full stop added when it ends without punctuation."""
    instruction = (instruction or "").strip()
    if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


PROMPT_STYLES: dict[str, Callable[[SequenceItem, PromptCfg], Prompt]] = {
    "vlm2vec": vlm2vec_prompt,
    "qwen_chat": qwen_chat_prompt,
}


# -- images -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePrep:
    """What happens to an image before the processor sees it (each step off when None)."""

    presize: int | None = None  # squash every image to this square side
    upscale_below: int | None = None  # then a side under this many pixels: squash to twice it
    factor: int | None = None  # resize to multiples of this (patch x merge) within the bounds
    min_pixels: int | None = None  # ... at least this many pixels (with ``factor``)
    max_pixels: int | None = None  # ... at most this many pixels (with ``factor``)


def prepare_image(image: PILImage.Image, prep: ImagePrep) -> PILImage.Image:
    """``image`` as the reference hands it to its processor."""
    if prep.presize is not None:  # VLM2Vec's collator, before its processor function
        image = image.resize((prep.presize, prep.presize))  # PIL's default filter, as VLM2Vec
    if prep.upscale_below is not None and min(image.size) < prep.upscale_below:
        # VLM2Vec, Qwen2_VL_process_fn: "resize to 28*28 if either w or h is smaller than 28"
        side = 2 * prep.upscale_below
        image = image.resize((side, side))
    if prep.factor is not None:
        image = _rgb(image)
        width, height = image.size
        new_height, new_width = smart_resize(
            height, width, prep.factor, prep.min_pixels, prep.max_pixels
        )
        image = image.resize((new_width, new_height))
    return image


def _rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB, with transparent pixels on white (what ``qwen_vl_utils`` does)."""
    if image.mode == "RGBA":
        background = PILImage.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB")


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int | None, max_pixels: int | None
) -> tuple[int, int]:
    """``(height, width)`` rounded to multiples of ``factor``, scaled into the pixel bounds.

    The rule of Qwen2-VL's processors and ``qwen_vl_utils``: round each side to the nearest
    multiple; if the area is over ``max_pixels`` scale down (flooring), if under ``min_pixels``
    scale up (ceiling), keeping the aspect ratio.
    """
    max_pixels = max_pixels if max_pixels is not None else 16384 * factor * factor
    min_pixels = min_pixels if min_pixels is not None else 4 * factor * factor
    if max(height, width) / min(height, width) > 200:
        raise InputError(f"image aspect ratio {width}x{height} is over 200")
    new_height = max(factor, round(height / factor) * factor)
    new_width = max(factor, round(width / factor) * factor)
    if new_height * new_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_height = math.floor(height / beta / factor) * factor
        new_width = math.floor(width / beta / factor) * factor
    elif new_height * new_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_height = math.ceil(height * beta / factor) * factor
        new_width = math.ceil(width * beta / factor) * factor
    return new_height, new_width


# -- videos (Qwen3-VL-Embedding) ------------------------------------------------------------------


@dataclass(frozen=True)
class VideoPrep:
    """How Qwen3-VL-Embedding's reference prepares a video given as frames (``qwen_vl_utils``
    ``fetch_video``, with the embedder's ``total_pixels``), for merged patches of ``factor``."""

    factor: int = 32  # patch x merge of the model
    total_pixels: int = 10 * 768 * 32 * 32  # the reference's MAX_TOTAL_PIXELS
    max_frames: int = 64  # the reference keeps at most this many frames (evenly spaced)
    fps: float = 2.0  # the frame rate written into the metadata of a frame list
    min_tokens: int = 128  # per frame, in merged tokens (VIDEO_MIN_TOKEN_NUM)
    max_tokens: int = 768  # per frame (VIDEO_MAX_TOKEN_NUM)


def prepare_video(
    frames: list[PILImage.Image], prep: VideoPrep
) -> tuple[torch.Tensor, dict[str, object]]:
    """Frames as the reference hands them to its processor: ``(T, 3, H, W)`` float pixels and
    the video metadata it writes for a frame list (frame indices, fps).

    Each frame is first resized alone with twice the factor (the reference passes its merged
    patch size where ``fetch_image`` expects the patch size), frames are padded to an even count
    by repeating the last, then the stack is resized with bicubic antialiasing to fit the
    per-frame pixel budget.
    """
    if len(frames) > prep.max_frames:
        keep = np.linspace(0, len(frames) - 1, prep.max_frames, dtype=int)
        frames = [frames[i] for i in keep]
    images = [prepare_image(frame, ImagePrep(factor=2 * prep.factor)) for frame in frames]
    images += [images[-1]] * (len(images) % 2)
    video = torch.stack(
        [torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy()) for image in images]
    )  # (T, 3, H, W)
    count, _, height, width = video.shape
    min_pixels = prep.min_tokens * prep.factor**2
    max_pixels = max(
        min(prep.max_tokens * prep.factor**2, prep.total_pixels / count * 2),
        int(min_pixels * 1.05),
    )
    size = smart_resize(height, width, prep.factor, min_pixels, max_pixels)
    video = tv.resize(video, list(size), InterpolationMode.BICUBIC, antialias=True).float()
    metadata = {"fps": prep.fps, "frames_indices": list(range(count)), "total_num_frames": count}
    return video, metadata
