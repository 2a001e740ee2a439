"""How far one model's outputs drift from a reference's: the one comparison behind the export
check (ONNX file vs PyTorch), the engine check (TensorRT vs ONNX Runtime) and `gkd validate`
(label agreement over whole domains). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gkd_deploy.runtime.base import Predictor, labels_of


@dataclass
class Agreement:
    """Running totals: class-score differences (where both sides have scores) and label agreement."""

    images: int = 0
    pixels: int = 0
    agreeing: int = 0
    max_diff: float = 0.0
    diff_sum: float = 0.0
    scores: int = 0

    def add_scores(self, reference: np.ndarray, other: np.ndarray) -> None:
        difference = np.abs(np.asarray(other, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
        self.max_diff = max(self.max_diff, float(difference.max()))
        self.diff_sum += float(difference.sum())
        self.scores += difference.size

    def add_labels(self, reference: np.ndarray, other: np.ndarray) -> None:
        """(B, H, W) label maps of the same images."""
        reference, other = np.asarray(reference), np.asarray(other)
        self.agreeing += int((reference.astype(np.int64) == other.astype(np.int64)).sum())
        self.pixels += reference.size
        self.images += reference.shape[0]

    @property
    def max_abs_diff(self) -> float | None:
        return self.max_diff if self.scores else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.diff_sum / self.scores if self.scores else None

    @property
    def pixel_agreement(self) -> float:
        """Percent of pixels with the same label (100 before any)."""
        return 100.0 * self.agreeing / self.pixels if self.pixels else 100.0


def compare_predictors(reference: Predictor, other: Predictor, images: np.ndarray, batch_size: int = 4) -> Agreement:
    """Run both on `images` ((N, 3, H, W) float32, the models' input size): scores where both have
    them, and `other`'s own labels (its labels output where it has one) against the reference's
    (the argmax of its scores, or its labels output when it returns labels only)."""
    agreement = Agreement()
    images = np.ascontiguousarray(images, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if reference.info.has_scores:
            expected = reference(batch)
            if other.info.has_scores:
                agreement.add_scores(expected, other(batch))
            expected_labels = labels_of(expected)
        else:
            expected_labels = reference.labels(batch)
        agreement.add_labels(expected_labels, other.labels(batch))
    return agreement
