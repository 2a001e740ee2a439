"""Decoders: feature maps of the frozen encoder -> per-class logits.

Every decoder takes `in_channels` (encoder width), `num_levels` (number of feature blocks) and
`num_classes`, and maps a list of (B, C, h, w) maps at the encoder's stride to (B, K, h', w')
logits; the segmenter resizes them to the input size. Chosen by name from `DECODERS`.
"""

from __future__ import annotations

import difflib
import inspect
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


def decoder_option_names(name: str) -> tuple[str, ...]:
    """The options a decoder (or preset) takes: its constructor's keyword-only parameters."""
    decoder = PRESETS[name][0] if name in PRESETS else name
    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder '{name}'; available: {', '.join(DECODER_NAMES)}")
    parameters = inspect.signature(DECODERS[decoder].__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def check_decoder_options(name: str, options: dict[str, Any], where: str = "decoder_options") -> None:
    """ConfigError for an option `name` does not take, when the config is read (not when stage 3
    builds the decoder, after the distillation stages ran)."""
    known = decoder_option_names(name)
    for option in options:
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: the {name} decoder has no option '{option}'{hint}; it takes "
                              f"{', '.join(known) or 'none'}")


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
