"""The predictor interface and what every predictor knows about its model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """`input_size` is (H, W) for models built for one size (exported files), None for any size.
    `outputs`: what the model returns, "scores" and/or "labels" (`gkd export --outputs`), or for
    `task` "instance" masks, classes and scores (an `InstancePredictor`)."""

    class_set: ClassSet
    input_size: tuple[int, int] | None
    precision: str
    backend: str
    source: str
    patch_size: int = 16
    outputs: tuple[str, ...] = ("scores", "labels")
    task: str = "semantic"

    @property
    def has_scores(self) -> bool:
        return "scores" in self.outputs


class Predictor(Protocol):
    info: ModelInfo

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 RGB 0..255 -> (B, K, H, W) float32 class scores, numpy arrays on the host:
        the interface needs no torch, so a deployed model runs where only the runtime is installed.
        A labels-only export has no scores: `require_scores` says so."""
        ...

    def labels(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, H, W) uint8 train ids: the model's own labels output where it
        has one (only those bytes leave the device), else the argmax of its scores."""
        ...


class InstancePredictor(Protocol):
    """What runs an instance model (`info.task == "instance"`)."""

    info: ModelInfo

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 RGB 0..255 -> masks (B, K, H, W) bool, classes (B, K) int64 (indices
        into `info.class_set`), scores (B, K) float32: the top K instances of every image."""
        ...


def no_label_map(info: ModelInfo) -> ModelError:
    """The error for asking an instance model for a semantic label map."""
    return ModelError(f"{info.source} is an instance segmenter: it gives masks, classes and scores, not a label "
                      "map; use a command that takes instance models (gkd eval, validate, export, infer, benchmark)")


def labels_of(scores: np.ndarray) -> np.ndarray:
    """(B, K, H, W) scores -> (B, H, W) uint8 labels."""
    return scores.argmax(1).astype(np.uint8)


def require_scores(info: ModelInfo, use: str) -> None:
    """ModelError when a labels-only file is asked for scores (`use` says what needs them)."""
    if not info.has_scores:
        raise ModelError(f"{info.source} returns labels only (exported with --outputs labels); {use} needs class "
                         "scores: use a file exported with --outputs scores or both")
