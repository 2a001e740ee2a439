"""The configurations that define a segmenter's architecture: torch-free, so that the runtime
reads an exported file's config back as this type (`ExportMetadata.segmenter_config`) where only
ONNX Runtime is installed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gkd_deploy.data.classes import CITYSCAPES, ClassSet
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
        data = asdict(self)
        data["feature_blocks"] = list(self.feature_blocks) if self.feature_blocks is not None else None
        data["class_set"] = {"name": self.class_set.name, "names": list(self.class_set.names),
                             "palette": [list(c) for c in self.class_set.palette],
                             "ignore_index": self.class_set.ignore_index}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmenterConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"segmenter config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "encoder" not in data:
            raise ConfigError("segmenter config: field 'encoder' is missing")
        values = dict(data)
        if values.get("feature_blocks") is not None:
            values["feature_blocks"] = tuple(int(b) for b in values["feature_blocks"])
        if "class_set" in values:
            raw = values["class_set"]
            try:
                values["class_set"] = ClassSet(
                    name=str(raw["name"]), names=tuple(raw["names"]),
                    palette=tuple(tuple(int(v) for v in c) for c in raw["palette"]),
                    ignore_index=int(raw.get("ignore_index", 255)),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ConfigError(f"segmenter config: field 'class_set' is malformed ({error})") from None
        return cls(**values)
