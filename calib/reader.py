"""Feeding calibration images to onnxruntime's calibrators."""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class ImageBatchReader(CalibrationDataReader):
    """Yields `{input_name: (B, 3, H, W) float32}` batches of `images` (N, 3, H, W), 0..255.

    Images are converted to float32 one batch at a time, so a calibration set of hundreds of
    large windows stays in memory as uint8.
    """

    def __init__(self, images: np.ndarray, input_name: str = "images", batch_size: int = 8) -> None:
        self.images = images
        self.input_name = input_name
        self.batch_size = batch_size
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= len(self.images):
            return None
        batch = self.images[self._start:self._start + self.batch_size]
        self._start += len(batch)
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __len__(self) -> int:
        return len(self.images)
