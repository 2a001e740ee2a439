"""Semantic segmentation metrics from one confusion matrix over a whole split.

    >>> from gkd_deploy.metrics import SegmentationMetric
    >>> metric = SegmentationMetric(num_classes=19)
    >>> metric.update(pred, target)        # (B, H, W) or (H, W) label maps, any number of times
    >>> result = metric.compute()
    >>> result.miou, result.iou[13]        # percent; absent classes are NaN

Conventions (Cityscapes scripts and mmseg): pixels whose target is the ignore label are left out;
IoU per class = TP / (TP + FP + FN); classes with TP + FP + FN = 0 (in neither prediction nor
ground truth) are NaN and left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gkd_deploy.data.classes import IGNORE_INDEX


@dataclass(frozen=True)
class MetricResult:
    """Scores in percent. `iou[c]` is NaN for a class present in neither prediction nor target."""

    miou: float
    iou: tuple[float, ...]
    pixel_accuracy: float
    num_pixels: int

    def present_classes(self) -> list[int]:
        return [c for c, value in enumerate(self.iou) if not math.isnan(value)]


class SegmentationMetric:
    """Accumulates a (num_classes x num_classes) confusion matrix: rows target, columns prediction."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch. `pred` and `target` are integer label maps of the same shape.

        A target value that is neither a class nor the ignore label is a bug in the data path,
        so it raises instead of being counted somewhere.
        """
        pred = torch.as_tensor(pred).long().flatten().cpu()
        target = torch.as_tensor(target).long().flatten().cpu()
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.numel()} pixels, target {target.numel()}")
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        if target.numel() == 0:
            return
        if int(target.min()) < 0 or int(target.max()) >= self.num_classes:
            raise ValueError(f"target holds values outside 0..{self.num_classes - 1} and {self.ignore_index}")
        if int(pred.min()) < 0 or int(pred.max()) >= self.num_classes:
            raise ValueError(f"prediction holds values outside 0..{self.num_classes - 1}")
        counts = torch.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def merge(self, other: "SegmentationMetric") -> None:
        """Add another metric's counts (e.g. from another process)."""
        self.confusion += other.confusion

    def labelled_classes(self) -> list[int]:
        """Classes with at least one labelled pixel in the targets seen so far."""
        return [c for c, count in enumerate(self.confusion.sum(1).tolist()) if count > 0]

    def compute(self, classes: Sequence[int] | None = None) -> MetricResult:
        """Scores over everything added. `classes` restricts the mean to those class indices (a data
        set that labels only some of the classes is scored over those); `iou` always lists all."""
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, math.nan))
        present = ~torch.isnan(iou)
        if classes is not None:
            chosen = torch.zeros_like(present)
            chosen[list(classes)] = True
            present &= chosen
        miou = float(iou[present].mean()) * 100 if bool(present.any()) else math.nan
        total = float(confusion.sum())
        accuracy = float(true_positive.sum()) / total * 100 if total > 0 else math.nan
        return MetricResult(
            miou=miou,
            iou=tuple(float(v) * 100 for v in iou),
            pixel_accuracy=accuracy,
            num_pixels=int(total),
        )
