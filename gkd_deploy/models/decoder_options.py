"""Each decoder's options as a frozen dataclass, checked when a config is read.

A config stores a decoder's options as a plain mapping of only the options the user gave (the
YAML, checkpoint and ONNX-metadata form); `resolve_decoder_options` turns the decoder name (or
preset) and that mapping into the decoder's options class: the preset's values, the given ones
over them, every value of the right type and range. So a bad option fails when the training
config, run folder or checkpoint is read, not when stage 3 builds the decoder after the
distillation stages ran. The dataclasses hold the only defaults: each decoder takes its options
object (`gkd_deploy.models.decoders`).

Torch-free, like `models.config`, which reads an exported file's config back where only ONNX
Runtime is installed.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from gkd_deploy.errors import ConfigError

#: Resize factors of the GKD pyramid for the four feature blocks, shallowest first: strides 4, 8,
#: 16, 32 for a stride-16 encoder (`models.pyramid`, SemFPN's `scales`, Mask2Former's levels).
DEFAULT_SCALES: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)

#: Mask2Former's sine position conventions (`position_code`): where a pixel's coordinate sits
#: before normalisation to (0, 2*pi], as (offset, eps) of (i + offset) / (n + eps). "centre":
#: (i + 0.5) / n, Detectron2's Mask2Former (`PositionEmbeddingSine`, offset -0.5 on the 1-based
#: count); "mmdet": (i + 1) / (n + 1e-6), mmdetection's `SinePositionalEncoding` with its default
#: offset 0, which the GKD authors' mmseg heads were trained with.
POSITION_CODES: dict[str, tuple[float, float]] = {"centre": (0.5, 0.0), "mmdet": (1.0, 1e-6)}


@dataclass(frozen=True)
class DecoderOptions:
    """The options every decoder's class derives from: values are checked against the field types
    (an int stays an int, a float field takes any number, a tuple field any list) and then by the
    decoder's own `_check`; ConfigError names the option and what to give instead."""

    decoder: ClassVar[str]  # the DECODER_OPTIONS name, for messages

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            object.__setattr__(self, item.name, self._typed(item.name, hints[item.name]))
        self._check()

    def _check(self) -> None:
        """Ranges and relations between options (the types are already right)."""

    def input_levels(self) -> int | None:
        """How many encoder feature maps the decoder takes with these options (None: any number)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Every option, JSON-able (tuples as lists): what `from_dict` reads back."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], where: str = "decoder_options",
                  decoder: str | None = None) -> "DecoderOptions":
        """From a mapping of some of the options (the rest keep their defaults). ConfigError prefixed
        with `where` for an unknown name (with a did-you-mean hint) or a bad value; `decoder`: the
        name the user gave (a preset's) for the messages."""
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where} must be a mapping of option names to values, got {options!r}")
        known = tuple(item.name for item in fields(cls))
        for option in options:
            if option not in known:
                close = difflib.get_close_matches(str(option), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"{where}: the {decoder or cls.decoder} decoder has no option '{option}'{hint}; "
                                  f"it takes {', '.join(known) or 'none'}")
        try:
            return cls(**options)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def _fail(self, name: str, requirement: str) -> typing.NoReturn:
        raise ConfigError(f"{self.decoder} option '{name}' must be {requirement}, got {getattr(self, name)!r}")

    def _typed(self, name: str, hint: Any) -> Any:
        value = getattr(self, name)
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self._fail(name, "an integer")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self._fail(name, "a finite number")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                self._fail(name, "text")
            return value
        if typing.get_origin(hint) is tuple:  # tuple[float, ...]
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                self._fail(name, "a list of finite numbers")
            return tuple(float(v) for v in value)
        raise TypeError(f"{type(self).__name__}.{name}: no check for the type {hint!r}")  # a bug

    def _at_least(self, low: int, *names: str) -> None:
        for name in names:
            if getattr(self, name) < low:
                self._fail(name, "a positive integer" if low == 1 else f">= {low}")

    def _divisible(self, name: str, by: str, why: str) -> None:
        if getattr(self, name) % getattr(self, by):
            raise ConfigError(f"{self.decoder} option '{name}' ({getattr(self, name)}) must be divisible by "
                              f"'{by}' ({getattr(self, by)}, {why}): change one of them")

    def _within(self, name: str, low: float, high: float, *, high_included: bool) -> None:
        value = getattr(self, name)
        if not (low <= value <= high if high_included else low <= value < high):
            self._fail(name, f"in [{low:g}, {high:g}{']' if high_included else ')'}")


@dataclass(frozen=True)
class LinearOptions(DecoderOptions):
    """The linear probe has no options."""

    decoder: ClassVar[str] = "linear"


@dataclass(frozen=True)
class SemFPNOptions(DecoderOptions):
    """SemFPN (`decoders.semfpn`).

    neck_channels: FPN channels (256 in the authors' setup).
    head_channels: semantic-head channels (128); must be divisible by `groups`.
    groups: GroupNorm groups in the semantic head (32).
    dropout: channel dropout before the classifier, in [0, 1) (0.1).
    scales: pyramid resize factors, finest level first, each a power-of-two fraction of the first:
        (4, 2, 1, 0.5) turns stride-16 maps into strides 4, 8, 16, 32; one per feature block.
    """

    decoder: ClassVar[str] = "semfpn"

    neck_channels: int = 256
    head_channels: int = 128
    groups: int = 32
    dropout: float = 0.1
    scales: tuple[float, ...] = DEFAULT_SCALES

    def _check(self) -> None:
        self._at_least(1, "neck_channels", "head_channels", "groups")
        self._divisible("head_channels", "groups", "the GroupNorm groups")
        self._within("dropout", 0.0, 1.0, high_included=False)
        self.upsampling_steps()

    def input_levels(self) -> int:
        return len(self.scales)  # one map per pyramid level

    def upsampling_steps(self) -> list[int]:
        """How many 2x upsamplings bring each level to the finest one: (4, 2, 1, 0.5) -> [0, 1, 2, 3]."""
        scales = self.scales
        if not scales or any(s <= 0 for s in scales):
            self._fail("scales", "a non-empty list of positive resize factors (finest level first)")
        steps = []
        for scale in scales:
            ratio = scales[0] / scale
            step = round(math.log2(ratio))
            if step < 0 or not math.isclose(ratio, 2.0**step, rel_tol=1e-6):
                self._fail("scales", "powers-of-two fractions of the first (finest) level, e.g. [4, 2, 1, 0.5]")
            steps.append(step)
        if any(later <= earlier for earlier, later in zip(steps, steps[1:])):
            self._fail("scales", "strictly decreasing (finest level first), e.g. [4, 2, 1, 0.5]")
        return steps


@dataclass(frozen=True)
class Mask2FormerOptions(DecoderOptions):
    """Mask2Former (`decoders.mask2former`).

    hidden_dim: channels of the pixel decoder, queries and mask features (256); divisible by
        `num_heads`, by `groups` and by 4 (sine position codes).
    num_queries: Q (100).
    dec_layers: transformer decoder layers (9: three passes over strides 32, 16, 8).
    pixel_layers: deformable encoder layers of the pixel decoder (6).
    num_heads: attention heads of both the deformable encoder and the decoder (8).
    num_points_deform: deformable sampling points per head and level (4).
    dim_feedforward: FFN width of the transformer decoder (2048).
    pixel_ffn: FFN width of the deformable encoder (1024).
    num_points: points per mask for the matching costs and mask losses (12544 = 112^2).
    oversample_ratio: candidates drawn per loss point by the importance sampler, >= 1 (3.0).
    importance_sample_ratio: share of loss points taken where the mask is most uncertain, in [0, 1] (0.75).
    class_weight, mask_weight, dice_weight: loss and matching-cost weights, >= 0 (2, 5, 5).
    no_object_weight: cross-entropy weight of the "no object" class, >= 0 (0.1).
    groups: GroupNorm groups of the pixel decoder (32).
    position_code: pixel coordinates of the sine position embeddings (`POSITION_CODES`).
    """

    decoder: ClassVar[str] = "mask2former"

    hidden_dim: int = 256
    num_queries: int = 100
    dec_layers: int = 9
    pixel_layers: int = 6
    num_heads: int = 8
    num_points_deform: int = 4
    dim_feedforward: int = 2048
    pixel_ffn: int = 1024
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    groups: int = 32
    position_code: str = "centre"

    def _check(self) -> None:
        self._at_least(1, "hidden_dim", "num_queries", "num_heads", "num_points_deform", "dim_feedforward",
                       "pixel_ffn", "num_points", "groups")
        self._at_least(0, "dec_layers", "pixel_layers")
        self._divisible("hidden_dim", "num_heads", "the attention heads")
        self._divisible("hidden_dim", "groups", "the GroupNorm groups")
        if self.hidden_dim % 4:
            self._fail("hidden_dim", "a multiple of 4 (sine position codes)")
        if self.position_code not in POSITION_CODES:
            self._fail("position_code", f"one of {', '.join(POSITION_CODES)}")
        if self.oversample_ratio < 1.0:
            self._fail("oversample_ratio", ">= 1")
        self._within("importance_sample_ratio", 0.0, 1.0, high_included=True)
        for name in ("class_weight", "mask_weight", "dice_weight", "no_object_weight"):
            if getattr(self, name) < 0:
                self._fail(name, ">= 0")

    def input_levels(self) -> int:
        return len(DEFAULT_SCALES)  # the pixel decoder's pyramid: strides 4, 8, 16, 32


#: The lighter edge configuration of Mask2Former: half the width, half the queries, one decoder
#: pass over the three levels (3 layers instead of 9) and a 2-layer deformable encoder (instead of
#: 6), with 4 attention heads (32 channels each, as in the default) and FFNs scaled with the width.
EDGE_PRESET: dict[str, Any] = {
    "hidden_dim": 128,
    "num_queries": 50,
    "dec_layers": 3,
    "pixel_layers": 2,
    "num_heads": 4,
    "dim_feedforward": 1024,
    "pixel_ffn": 512,
}

#: Decoder name -> its options class (`decoders.DECODERS` holds the modules under the same names).
DECODER_OPTIONS: dict[str, type[DecoderOptions]] = {
    "linear": LinearOptions,
    "semfpn": SemFPNOptions,
    "mask2former": Mask2FormerOptions,
}

#: Named configurations of a decoder: (decoder, options); options given explicitly win over these.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mask2former-edge": ("mask2former", EDGE_PRESET),
}

DECODER_NAMES = (*DECODER_OPTIONS, *PRESETS)


def decoder_kind(name: str) -> str:
    """The decoder a name builds (a preset's decoder, or the name itself); ConfigError if unknown."""
    if name in PRESETS:
        return PRESETS[name][0]
    if name not in DECODER_OPTIONS:
        close = difflib.get_close_matches(str(name), DECODER_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown decoder '{name}'{hint}; available: {', '.join(DECODER_NAMES)}")
    return name


def check_input_levels(options: DecoderOptions, feature_maps: int, source: str, where: str) -> None:
    """ConfigError unless the decoder takes `feature_maps` encoder maps (`source` says where that
    number comes from, e.g. "feature_blocks"), when the config is read rather than when it is built."""
    levels = options.input_levels()
    if levels is not None and levels != feature_maps:
        fix = "give one scale per feature block" if isinstance(options, SemFPNOptions) else \
            f"give {levels} feature blocks"
        raise ConfigError(f"{where}: the {options.decoder} decoder takes {levels} feature maps, but {source} gives "
                          f"{feature_maps}: {fix}")


def resolve_decoder_options(name: str, options: Mapping[str, Any] | DecoderOptions | None = None,
                            where: str = "decoder_options") -> DecoderOptions:
    """The typed options of decoder (or preset) `name`: a preset's values with `options` over them.

    `options`: a mapping of the options given (a config's stored form), or an options object
    (taken as it is: it holds every option already). ConfigError, prefixed with `where` (the
    setting's name, e.g. "stage3.decoder_options"), for an unknown decoder or option or a bad value.
    """
    options_class = DECODER_OPTIONS[decoder_kind(name)]
    if isinstance(options, DecoderOptions):
        if not isinstance(options, options_class):
            raise ConfigError(f"{where}: the {name} decoder takes {options_class.__name__}, "
                              f"got {type(options).__name__}")
        return options
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"{where} must be a mapping of option names to values, got {options!r}")
    preset = PRESETS[name][1] if name in PRESETS else {}
    return options_class.from_dict({**preset, **(options or {})}, where, decoder=name)
