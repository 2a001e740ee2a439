"""A segmenter is a zoo encoder, a decoder and a class set, rebuilt from its config alone.

The config travels with every checkpoint (and later every exported model), so nothing else is
needed to rebuild the network: the nanoGPT habit of storing architecture arguments with weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.config import SegmenterConfig
from gkd_deploy.models.decoders import build_decoder
from gkd_deploy.models.encoder import ViTEncoder


class ClassesOfConfig:
    """The class set of a model built from a config with a `class_set` (semantic or instance)."""

    config: Any

    @property
    def class_set(self) -> ClassSet:
        return self.config.class_set

    @property
    def num_classes(self) -> int:
        return self.config.class_set.num_classes


class Segmenter(ClassesOfConfig, nn.Module):
    """Encoder -> decoder -> logits at the input resolution.

    Input: (B, 3, H, W) float RGB in 0..255, H and W multiples of the patch size.
    Output: (B, K, H, W) class logits.
    """

    task = "semantic"  # what an export's metadata says (`runtime.metadata.TASK_OUTPUTS`)

    def __init__(self, encoder: ViTEncoder, decoder: nn.Module, config: SegmenterConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder.forward_features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_segmenter(
    config: SegmenterConfig, *, pretrained: bool = False, weights: str | None = None
) -> Segmenter:
    """Build from a config; the encoder gets pretrained (or file) weights only when asked."""
    encoder = create_encoder(
        config.encoder, pretrained=pretrained, weights=weights, patch_size=config.patch_size,
        img_size=config.img_size, feature_blocks=config.feature_blocks,
    )
    decoder = build_decoder(
        config.decoder, config.decoder_settings(), in_channels=encoder.embed_dim,
        num_levels=len(encoder.feature_blocks), num_classes=config.class_set.num_classes,
    )
    return Segmenter(encoder, decoder, config)
