"""The predictor interface and what every predictor knows about its model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from gkd_deploy.data.classes import ClassSet


@dataclass(frozen=True)
class ModelInfo:
    """`input_size` is (H, W) for models built for one size (exported files), None for any size."""

    class_set: ClassSet
    input_size: tuple[int, int] | None
    precision: str
    backend: str
    source: str
    patch_size: int = 16


class Predictor(Protocol):
    info: ModelInfo

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 RGB 0..255 -> (B, K, H, W) class scores (on the CPU for file backends)."""
        ...
