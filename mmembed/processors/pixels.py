"""Image preprocessing on the model's device: workers send uint8 pixels, the GPU resizes.

A tower's eval transform (open_clip's ``Resize -> CenterCrop -> RGB -> ToTensor ->
Normalize``) is replayed with torchvision's tensor functions on batches of decoded pixels,
so worker processes only decode. The result is not bit-identical to the PIL path: PIL
resizes in fixed point on uint8, torch in float (rounded back to uint8, as PIL does); pixels
differ by at most a few levels at edges, and the vectors agree to cosine >= 0.9999 (tested on
the asset photos). A transform with any other step returns ``None``: that tower's images are
preprocessed by PIL in the workers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

Step = Callable[[torch.Tensor], torch.Tensor]


def raw_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as ``(3, H, W)`` uint8, what workers send for device preprocessing."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def tensor_steps(transform: object) -> list[Step] | None:
    """The steps of a torchvision ``Compose`` as tensor functions, or None if one has none."""
    steps: list[Step] = []
    cropped = scaled = False
    for step in getattr(transform, "transforms", None) or [None]:
        if isinstance(step, T.Resize):
            steps.append(_resize(step))
        elif isinstance(step, T.CenterCrop):
            steps.append(lambda x, size=step.size: F.center_crop(x, list(size)))
            cropped = True
        elif getattr(step, "mode", None) == "RGB":  # e.g. open_clip's MaybeConvertMode
            continue  # raw pixels are RGB already (processors.image.load_image)
        elif isinstance(step, T.ToTensor):
            steps.append(lambda x: x.float().div_(255))  # (B, 3, H, W) in [0, 1]
            scaled = True
        elif isinstance(step, T.Normalize) and scaled:
            steps.append(lambda x, mean=step.mean, std=step.std: F.normalize(x, mean, std))
        else:
            return None
    # A crop makes every output the same size; scaling to [0, 1] must have happened.
    return steps if cropped and scaled else None


def _resize(step: T.Resize) -> Step:
    def resize(x: torch.Tensor) -> torch.Tensor:
        # uint8 in, uint8 out: torchvision rounds and clamps as PIL's uint8 resize does.
        return F.resize(x, step.size, step.interpolation, step.max_size, antialias=True)

    return resize


def preprocess_batch(steps: list[Step], images: list[torch.Tensor]) -> torch.Tensor:
    """``(B, 3, h, w)`` float pixels from ``(3, H, W)`` uint8 images of any sizes.

    Images of one size go through the steps together (one kernel per step, not per image).
    """
    by_size: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(index)
    out: list[torch.Tensor | None] = [None] * len(images)
    for members in by_size.values():
        x = torch.stack([images[i] for i in members])  # (b, 3, H, W) uint8
        for step in steps:
            x = step(x)
        for row, index in enumerate(members):
            out[index] = x[row]
    return torch.stack(out)  # (B, 3, h, w)
