"""A segmenter is a zoo encoder, a decoder and a class set, rebuilt from its config alone.

The config travels with every checkpoint (and later every exported model), so nothing else is
needed to rebuild the network: the nanoGPT habit of storing architecture arguments with weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.data.classes import CITYSCAPES, ClassSet, class_set_from_dict, class_set_to_dict
from gkd_deploy.errors import ConfigError
from gkd_deploy.models.builder import DEFAULT_IMG_SIZE, DEFAULT_PATCH_SIZE, create_encoder
from gkd_deploy.models.decoders import build_decoder
from gkd_deploy.models.encoder import ViTEncoder


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
        config.decoder, in_channels=encoder.embed_dim, num_levels=len(encoder.feature_blocks),
        num_classes=config.class_set.num_classes, **config.decoder_options,
    )
    return Segmenter(encoder, decoder, config)
