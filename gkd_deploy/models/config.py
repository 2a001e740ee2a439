"""The configurations that define a segmenter's architecture: torch-free, so that the runtime
reads an exported file's config back as this type (`ExportMetadata.segmenter_config`) where only
ONNX Runtime is installed. `config_dict` / `config_values` write and read any such config (the
semantic `SegmenterConfig` here, the instance segmenter's too)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gkd_deploy.data.classes import CITYSCAPES, ClassSet, class_set_from_dict, class_set_to_dict
from gkd_deploy.errors import ConfigError

DEFAULT_PATCH_SIZE = 16
DEFAULT_IMG_SIZE = 512


@dataclass(frozen=True)
class EncoderConfig:
    """What rebuilds an encoder: zoo name, patch and input size, decoder feature blocks."""

    encoder: str
    patch_size: int = DEFAULT_PATCH_SIZE
    img_size: int = DEFAULT_IMG_SIZE
    feature_blocks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SegmenterConfig:
    """Everything that defines a segmenter's architecture and outputs."""

    encoder: str
    decoder: str = "linear"
    decoder_options: dict[str, Any] = field(default_factory=dict)
    patch_size: int = DEFAULT_PATCH_SIZE
    img_size: int = DEFAULT_IMG_SIZE
    feature_blocks: tuple[int, ...] | None = None
    class_set: ClassSet = CITYSCAPES

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @property
    def architecture(self) -> str:
        """What the config builds, in words (for errors)."""
        return f"{self.encoder} + {self.decoder}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmenterConfig":
        return cls(**config_values(cls, data, "segmenter config"))


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-able values (the form `config_values` reads back)."""
    data = asdict(config)
    data["feature_blocks"] = list(config.feature_blocks) if config.feature_blocks is not None else None
    data["class_set"] = class_set_to_dict(config.class_set)
    return data


def config_values(config_class: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    """A stored config's fields as `config_class(**values)` takes them: unknown and missing fields
    named (`what` says which config), feature blocks as a tuple, the class set rebuilt."""
    known = {f for f in config_class.__dataclass_fields__}
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
