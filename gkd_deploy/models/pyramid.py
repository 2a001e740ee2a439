"""A four-level feature pyramid from a plain ViT's block outputs, with no learned layers.

A plain ViT keeps one resolution (stride p, 16 for the students) through every block, while
pyramid decoders such as SemFPN expect maps at strides 4, 8, 16 and 32. Following the GKD
authors' setup (and ViTDet / mmseg's ViT + FPN recipe without its 1x1 convolutions), the four
block outputs are simply resized bilinearly by x4, x2, x1 and x0.5.

With `align_corners=False` the x0.5 bilinear resize samples exactly between four input pixels,
so on even-sized maps it equals a 2x2 average pool; x1 is left out of the graph (an identity).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.decoder_options import DEFAULT_SCALES  # the decoders' options default to it

__all__ = ["DEFAULT_SCALES", "ViTPyramid", "vit_pyramid"]


def vit_pyramid(maps: Sequence[torch.Tensor], scales: Sequence[float] = DEFAULT_SCALES) -> list[torch.Tensor]:
    """Resize each (B, C, h, w) map by its factor: maps[i] -> (B, C, floor(h*s_i), floor(w*s_i)).

    `maps` and `scales` pair up in order (shallowest block first). The resize is bilinear with
    `align_corners=False` in both directions and uses the given factor itself (not a factor
    recomputed from the rounded size), so PyTorch and ONNX Resize sample the same points.
    """
    if len(maps) != len(scales):
        raise ValueError(f"vit_pyramid: {len(maps)} feature maps but {len(scales)} scales {tuple(scales)}")
    resized = []
    for feature_map, scale in zip(maps, scales):
        # `scale` comes from the configuration, never from the data: a fixed graph when exported.
        if float(scale) == 1.0:
            resized.append(feature_map)
        else:
            resized.append(F.interpolate(feature_map, scale_factor=float(scale), mode="bilinear", align_corners=False))
    return resized


class ViTPyramid(nn.Module):
    """`vit_pyramid` as a module (no parameters), so a decoder can show its pyramid when printed."""

    def __init__(self, scales: Sequence[float] = DEFAULT_SCALES) -> None:
        super().__init__()
        scales = tuple(float(s) for s in scales)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"pyramid scales must be positive, got {scales}")
        self.scales = scales

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """len(scales) maps (B, C, h, w) -> maps (B, C, floor(h*s), floor(w*s)), one per scale."""
        return vit_pyramid(maps, self.scales)

    def extra_repr(self) -> str:
        return f"scales={self.scales}"
