"""What a user sees: colour masks from the model's palette, blended over the frame or beside it."""

from __future__ import annotations

import cv2
import numpy as np

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.errors import ConfigError


class Renderer:
    """Turns (frame, labels) into the pictures `gkd infer` writes; colours come from the model's metadata."""

    def __init__(self, class_set: ClassSet, alpha: float = 0.5, side_by_side: bool = False) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--alpha must be within 0..1, got {alpha}")
        self.alpha = alpha
        self.side_by_side = side_by_side
        # A BGR lookup table over all 256 label values; ignored and unknown ids are black.
        self.lut = np.zeros((256, 3), dtype=np.uint8)
        self.lut[: class_set.num_classes] = np.asarray(class_set.palette, dtype=np.uint8)[:, ::-1]

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) BGR colour mask."""
        return self.lut[labels]

    def overlay(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The frame with its colour mask blended in (alpha = mask weight)."""
        return cv2.addWeighted(frame, 1.0 - self.alpha, self.mask(labels), self.alpha, 0.0)

    def view(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The output picture: the overlay, or the frame and the overlay side by side (twice as wide)."""
        overlay = self.overlay(frame, labels)
        return np.concatenate([frame, overlay], axis=1) if self.side_by_side else overlay

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        return (2 * width if self.side_by_side else width), height
