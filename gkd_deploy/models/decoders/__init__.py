"""Decoders: feature maps of the frozen encoder -> per-class logits.

Every decoder takes `in_channels` (encoder width), `num_levels` (number of feature blocks),
`num_classes` and its options object (`models.decoder_options`, where the defaults live and the
values are checked), and maps a list of (B, C, h, w) maps at the encoder's stride to (B, K, h', w')
logits; the segmenter resizes them to the input size. Chosen by name from `DECODERS`.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoder_options import (
    DECODER_NAMES,
    DECODER_OPTIONS,
    PRESETS,
    DecoderOptions,
    LinearOptions,
    Mask2FormerOptions,
    SemFPNOptions,
    resolve_decoder_options,
)
from gkd_deploy.models.decoders.linear import LinearDecoder
from gkd_deploy.models.decoders.mask2former import Mask2FormerDecoder
from gkd_deploy.models.decoders.semfpn import SemFPNDecoder

# Under the names of `DECODER_OPTIONS`: each module is built from that options class.
DECODERS: dict[str, type[nn.Module]] = {
    "linear": LinearDecoder,
    "semfpn": SemFPNDecoder,
    "mask2former": Mask2FormerDecoder,
}

__all__ = ["DECODERS", "DECODER_NAMES", "DECODER_OPTIONS", "PRESETS", "DecoderOptions", "LinearOptions",
           "Mask2FormerOptions", "SemFPNOptions", "build_decoder", "resolve_decoder_options"]


def build_decoder(name: str, options: Mapping[str, Any] | DecoderOptions | None = None, *, in_channels: int,
                  num_levels: int, num_classes: int, **inputs: Any) -> nn.Module:
    """The decoder (or preset) `name` with `options` (a mapping of the options given, over the
    preset's, or an options object); `inputs`: how the feature maps arrive, where a decoder needs to
    know (Mask2Former's `multiscale_inputs`). ConfigError for bad options or feature maps the
    decoder cannot take (e.g. SemFPN scales that do not pair up with the feature blocks)."""
    settings = resolve_decoder_options(name, options)
    decoder_class = DECODERS[settings.decoder]
    try:
        return decoder_class(in_channels, num_levels, num_classes, settings, **inputs)
    except ValueError as error:
        raise ConfigError(f"decoder '{name}': {error}") from None
