"""A DPT-style head (Ranftl et al. 2021): four ViT block maps -> a fused stride 4/8/16/32 pyramid.

SSKD's student puts this between its ViT encoder and its Mask2Former decoder ("DPT-S head"), in
place of the parameter-free resize pyramid (`pyramid.vit_pyramid`):
1. reassemble: each block map (B, C_in, h, w) at the encoder's stride 16 is projected by a 1x1
   conv and resampled with learned layers (x4 and x2 by transposed convs, x1 as is, x0.5 by a
   stride-2 3x3 conv), then brought to `channels` by a 3x3 conv;
2. fuse: from the coarsest level down, each level adds the (bilinearly upsampled) fused level
   above it and passes a residual conv unit, so the fine maps see the deep blocks' context.
DPT's readout handling is not needed: the encoder already drops the class token from its maps.
The widths (one `channels` for every level) are our choice; the paper gives none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The pyramid's strides for a stride-16 encoder, shallowest block first.
DPT_STRIDES = (4, 8, 16, 32)


class ResidualConvUnit(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x)))), DPT's refinement unit."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.conv2(F.relu(self.conv1(F.relu(features))))


def _resample(channels: int, stride: int) -> nn.Module:
    """The learned resize of one level from the encoder's stride 16 to `stride`."""
    if stride < 16:
        factor = 16 // stride
        return nn.ConvTranspose2d(channels, channels, factor, stride=factor)
    if stride == 16:
        return nn.Identity()
    return nn.Conv2d(channels, channels, 3, stride=stride // 16, padding=1)


class DPTHead(nn.Module):
    """4 maps (B, C_in, h, w) at stride 16 -> 4 maps (B, channels, 4h, 4w), (.., 2h, 2w), (.., h, w),
    (.., h/2, w/2): strides 4, 8, 16, 32, shallowest block first (what `Mask2FormerDecoder` takes
    with `multiscale_inputs=True`).

    Args:
        in_channels: encoder width C_in.
        channels: width of every output level (256 in DPT).
    """

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        self.channels = channels
        self.reassemble = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, channels, 1), _resample(channels, stride),
                          nn.Conv2d(channels, channels, 3, padding=1, bias=False))
            for stride in DPT_STRIDES
        )
        self.fuse = nn.ModuleList(ResidualConvUnit(channels) for _ in DPT_STRIDES)

    def forward(self, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feature_maps) != len(DPT_STRIDES):
            raise ValueError(f"DPT head: {len(feature_maps)} feature maps, expected {len(DPT_STRIDES)}")
        levels = [layer(feature_map) for layer, feature_map in zip(self.reassemble, feature_maps)]
        fused: list[torch.Tensor] = []
        above = None
        for level, refine in zip(reversed(levels), reversed(self.fuse)):  # coarsest first
            if above is not None:
                level = level + F.interpolate(above, size=level.shape[-2:], mode="bilinear", align_corners=False)
            above = refine(level)
            fused.append(above)
        return fused[::-1]
