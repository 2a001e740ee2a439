"""Linear decoder: the lightest head that turns frozen ViT features into a label map.

It is the linear probe used to evaluate self-supervised ViTs for segmentation (batch norm, then a
1x1 convolution over the concatenated block outputs): no spatial context of its own, so its mIoU
measures what the encoder's features already separate.
"""

from __future__ import annotations

import torch
from torch import nn

from gkd_deploy.models.decoder_options import LinearOptions
from gkd_deploy.models.decoders.base import DenseDecoder


class LinearDecoder(DenseDecoder):
    def __init__(self, in_channels: int, num_levels: int, num_classes: int,
                 options: LinearOptions = LinearOptions()) -> None:
        super().__init__()
        self.options = options
        channels = in_channels * num_levels
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        """`num_levels` maps (B, C, h, w) -> logits (B, K, h, w)."""
        return self.classifier(self.norm(torch.cat(feature_maps, dim=1)))
