"""Decoders: feature maps of the frozen encoder -> per-class logits.

Every decoder takes `in_channels` (encoder width), `num_levels` (number of feature blocks) and
`num_classes`, and maps a list of (B, C, h, w) maps at the encoder's stride to (B, K, h', w')
logits; the segmenter resizes them to the input size. Chosen by name from `DECODERS`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoders.linear import LinearDecoder
from gkd_deploy.models.decoders.mask2former import EDGE_PRESET, Mask2FormerDecoder
from gkd_deploy.models.decoders.semfpn import SemFPNDecoder

DECODERS: dict[str, type[nn.Module]] = {
    "linear": LinearDecoder,
    "semfpn": SemFPNDecoder,
    "mask2former": Mask2FormerDecoder,
}

# Named configurations of a decoder: options given explicitly still win over the preset's.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mask2former-edge": ("mask2former", EDGE_PRESET),
}

DECODER_NAMES = (*DECODERS, *PRESETS)


def build_decoder(name: str, *, in_channels: int, num_levels: int, num_classes: int, **options: Any) -> nn.Module:
    if name in PRESETS:
        name, preset = PRESETS[name]
        options = {**preset, **options}
    try:
        decoder_class = DECODERS[name]
    except KeyError:
        raise ConfigError(f"unknown decoder '{name}'; available: {', '.join(DECODER_NAMES)}") from None
    try:
        return decoder_class(in_channels=in_channels, num_levels=num_levels, num_classes=num_classes, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"decoder '{name}': {error}") from None
