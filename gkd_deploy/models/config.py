"""The configurations that define a segmenter's architecture: torch-free, so that the runtime
reads an exported file's config back as its type (`ExportMetadata.segmenter_config`) where only
ONNX Runtime is installed. `config_dict` / `config_values` write and read any such config: the
semantic `SegmenterConfig` and the `InstanceSegmenterConfig`, one per task (`TASK_CONFIGS`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from gkd_deploy.data.classes import CITYSCAPES, CITYSCAPES_THINGS, ClassSet, class_set_from_dict, class_set_to_dict
from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoder_options import DecoderOptions, check_input_levels, resolve_decoder_options

DEFAULT_PATCH_SIZE = 16
DEFAULT_IMG_SIZE = 512
# D of the instance segmenter's training-only pixel projection head (`instance.projection`).
DEFAULT_PROJECTION_DIM = 128


@dataclass(frozen=True)
class EncoderConfig:
    """What rebuilds an encoder: zoo name, patch and input size, decoder feature blocks."""

    encoder: str
    patch_size: int = DEFAULT_PATCH_SIZE
    img_size: int = DEFAULT_IMG_SIZE
    feature_blocks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SegmenterConfig:
    """Everything that defines a segmenter's architecture and outputs.

    `decoder` names a decoder or preset; `decoder_options` holds only the options given (over the
    preset's, the rest at their defaults), as a plain mapping: the form files store, which
    `to_dict` writes back unchanged (an options object given instead is stored as the mapping of
    all its options). `decoder_settings()` is every option, typed; the options are checked when
    the config is made.
    """

    task: ClassVar[str] = "semantic"  # what its model does (`runtime.metadata.TASK_OUTPUTS`)

    encoder: str
    decoder: str = "linear"
    decoder_options: dict[str, Any] = field(default_factory=dict)
    patch_size: int = DEFAULT_PATCH_SIZE
    img_size: int = DEFAULT_IMG_SIZE
    feature_blocks: tuple[int, ...] | None = None
    class_set: ClassSet = CITYSCAPES

    def __post_init__(self) -> None:
        _check_decoder_options(self, "segmenter config")

    def decoder_settings(self) -> DecoderOptions:
        """The decoder's options object: the preset's values with `decoder_options` over them."""
        return resolve_decoder_options(self.decoder, self.decoder_options, "segmenter config: decoder_options")

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @property
    def architecture(self) -> str:
        """What the config builds, in words (for errors)."""
        return f"{self.encoder} + {self.decoder}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmenterConfig":
        return cls(**config_values(cls, data, "segmenter config"))


NECKS = ("pyramid", "dpt")
INSTANCE_DECODERS = ("mask2former", "mask2former-edge")


@dataclass(frozen=True)
class InstanceSegmenterConfig:
    """Everything that defines an instance segmenter's architecture and outputs.

    `neck`: "dpt" or "pyramid"; `neck_channels`: the DPT head's width. `decoder` (a Mask2Former
    name or preset) with `decoder_options`, the options given as a mapping (as `SegmenterConfig`
    keeps them; `decoder_settings()` the typed options); `class_set`: the C thing classes.
    `projection_dim`: D of the training-only pixel projection head, None for none. `top_k`, `mask_threshold`: the
    post-processing (`instance_predictions`), also what an export puts in its graph.
    """

    task: ClassVar[str] = "instance"

    encoder: str
    neck: str = "dpt"
    neck_channels: int = 256
    decoder: str = "mask2former"
    decoder_options: dict[str, Any] = field(default_factory=dict)
    patch_size: int = DEFAULT_PATCH_SIZE
    img_size: int = DEFAULT_IMG_SIZE
    feature_blocks: tuple[int, ...] | None = None
    class_set: ClassSet = CITYSCAPES_THINGS
    projection_dim: int | None = DEFAULT_PROJECTION_DIM
    top_k: int = 100
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        what = "instance segmenter config"
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ConfigError(f"{what}: 'encoder' must name a zoo model (e.g. vit-s), got {self.encoder!r}")
        if self.neck not in NECKS:
            raise ConfigError(f"{what}: unknown neck {self.neck!r}; choose from {', '.join(NECKS)}")
        if self.decoder not in INSTANCE_DECODERS:
            raise ConfigError(f"{what}: decoder {self.decoder!r} has no instance mode; choose from "
                              f"{', '.join(INSTANCE_DECODERS)}")
        _check_decoder_options(self, what)  # also refuses options that are not a mapping
        for name in ("neck_channels", "patch_size", "img_size", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{what}: '{name}' must be a positive integer, got {value!r}")
        if self.projection_dim is not None and (not isinstance(self.projection_dim, int) or self.projection_dim < 1):
            raise ConfigError(f"{what}: 'projection_dim' must be a positive integer or None, got {self.projection_dim!r}")
        if not (isinstance(self.mask_threshold, (int, float)) and 0.0 < self.mask_threshold < 1.0):
            raise ConfigError(f"{what}: 'mask_threshold' must lie strictly between 0 and 1, got {self.mask_threshold!r}")
        if self.class_set.num_classes < 1:
            raise ConfigError(f"{what}: the class set {self.class_set.name!r} has no classes")

    def decoder_settings(self) -> DecoderOptions:
        """The Mask2Former options object: the preset's values with `decoder_options` over them."""
        return resolve_decoder_options(self.decoder, self.decoder_options, "instance segmenter config: decoder_options")

    @property
    def architecture(self) -> str:
        """What the config builds, in words (for errors)."""
        return f"{self.encoder} + {self.neck} + {self.decoder} (instance)"

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstanceSegmenterConfig":
        return cls(**config_values(cls, data, "instance segmenter config"))


# The config of each task's model, by the task an exported file's metadata names.
TASK_CONFIGS: dict[str, type] = {"semantic": SegmenterConfig, "instance": InstanceSegmenterConfig}


def _check_decoder_options(config: SegmenterConfig | InstanceSegmenterConfig, what: str) -> None:
    """Check a config's decoder options (ConfigError naming the option) and, where the feature
    blocks are given, their number; an options object given for the options is kept as the mapping
    of all its options, the form files store."""
    settings = config.decoder_settings()
    if config.feature_blocks is not None:
        check_input_levels(settings, len(config.feature_blocks), f"feature_blocks {list(config.feature_blocks)}",
                           what)
    if isinstance(config.decoder_options, DecoderOptions):
        object.__setattr__(config, "decoder_options", settings.to_dict())


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-able values (the form `config_values` reads back)."""
    data = asdict(config)
    data["feature_blocks"] = list(config.feature_blocks) if config.feature_blocks is not None else None
    data["class_set"] = class_set_to_dict(config.class_set)
    return data


def config_values(config_class: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    """A stored config's fields as `config_class(**values)` takes them: unknown and missing fields
    named (`what` says which config), feature blocks as a tuple, the class set rebuilt."""
    known = {f.name for f in fields(config_class)}  # not the class variables (`task`)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "encoder" not in data:
        raise ConfigError(f"{what}: field 'encoder' is missing")
    values = dict(data)
    if values.get("feature_blocks") is not None:
        values["feature_blocks"] = tuple(int(b) for b in values["feature_blocks"])
    if "class_set" in values:
        try:
            values["class_set"] = class_set_from_dict(values["class_set"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{what}: field 'class_set' is malformed ({error})") from None
    return values
