"""COCO-style mask AP (IoU 0.50:0.05:0.95) and AP50, computed by pycocotools' `COCOeval`.

The metric is the one every instance segmentation paper reports, so it is not rewritten here:
predictions and ground truths are encoded as run-length masks (`pycocotools.mask.encode`), put
into in-memory COCO objects, and scored with `iouType="segm"` (101-point interpolated precision,
greedy matching in score order, at most `max_detections` per image). Only the "all" area range
is evaluated. AP is the mean over classes that have ground truth of each class's AP averaged over
the ten IoU thresholds; a class that is only predicted does not count, one that is never
predicted counts 0. Values are fractions (1.0 = perfect), not percentages.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gkd_deploy.errors import DataError

ArrayLike = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class MaskAP:
    """ap, ap50: over classes with ground truth (NaN when no image has any); per_class: class id
    -> AP; num_images: images evaluated."""

    ap: float
    ap50: float
    per_class: dict[int, float] = field(default_factory=dict)
    num_images: int = 0


def _numpy(values: ArrayLike) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _encode(masks: np.ndarray) -> list[dict]:
    """(N, H, W) masks -> N COCO run-length encodings."""
    if masks.shape[0] == 0:
        return []
    return coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


class MaskAPAccumulator:
    """Collects images one at a time (as run-length masks, so a whole val split fits in memory),
    then scores them all.

    Args:
        max_detections: the most predictions per image COCOeval keeps, the best-scored first (100).
    """

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = max_detections
        self._images: list[dict] = []
        self._truths: list[dict] = []
        self._predictions: list[dict] = []

    def add(self, masks: ArrayLike, classes: ArrayLike, scores: ArrayLike, truth_masks: ArrayLike,
            truth_classes: ArrayLike) -> None:
        """One image: predicted masks (K, H, W) bool, classes (K,), scores (K,); ground-truth masks
        (N, H, W) and classes (N,), at the same (H, W). K and N may be 0."""
        masks, truth_masks = _numpy(masks).astype(bool), _numpy(truth_masks).astype(bool)
        classes, scores, truth_classes = _numpy(classes), _numpy(scores), _numpy(truth_classes)
        image_id = len(self._images) + 1
        if masks.ndim != 3 or truth_masks.ndim != 3 or masks.shape[1:] != truth_masks.shape[1:]:
            raise DataError(f"mask AP, image {image_id}: predicted masks {masks.shape} and ground-truth masks "
                            f"{truth_masks.shape} must be (K, H, W) and (N, H, W) of one size")
        if not len(masks) == len(classes) == len(scores) or len(truth_masks) != len(truth_classes):
            raise DataError(f"mask AP, image {image_id}: {len(masks)} masks, {len(classes)} classes and "
                            f"{len(scores)} scores predicted, {len(truth_masks)} masks and "
                            f"{len(truth_classes)} classes in the ground truth; each must pair up")
        height, width = truth_masks.shape[1:]
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        for rle, label in zip(_encode(truth_masks), truth_classes):
            self._truths.append(self._annotation(len(self._truths) + 1, image_id, rle, label))
        for rle, label, score in zip(_encode(masks), classes, scores):
            self._predictions.append({**self._annotation(len(self._predictions) + 1, image_id, rle, label),
                                      "score": float(score)})

    @staticmethod
    def _annotation(annotation_id: int, image_id: int, rle: dict, label) -> dict:
        # Ids from 1: COCOeval stores matched ids in an array where 0 means "unmatched".
        return {"id": annotation_id, "image_id": image_id, "category_id": int(label), "segmentation": rle,
                "area": float(coco_mask.area(rle)), "bbox": coco_mask.toBbox(rle).tolist(), "iscrowd": 0}

    def _coco(self, annotations: list[dict], categories: list[int]) -> COCO:
        coco = COCO()
        coco.dataset = {"images": self._images, "annotations": annotations,
                        "categories": [{"id": category} for category in categories]}
        coco.createIndex()
        return coco

    def compute(self) -> MaskAP:
        """Score everything added so far."""
        categories = sorted({a["category_id"] for a in self._truths} | {a["category_id"] for a in self._predictions})
        if not self._truths:
            return MaskAP(math.nan, math.nan, {}, len(self._images))
        # pycocotools reports progress with print(); the library logs, it does not print.
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(self._coco(self._truths, categories), self._coco(self._predictions, categories),
                                  iouType="segm")
            evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0.0, 1e10]], ["all"]
            evaluation.params.maxDets = [self.max_detections]
            evaluation.evaluate()
            evaluation.accumulate()
        precision = evaluation.eval["precision"][:, :, :, 0, 0]  # (IoU thresholds, recalls, classes)
        present = precision[0, 0] > -1  # classes with ground truth
        at_50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
        per_class = {int(category): float(precision[:, :, k].mean())
                     for k, category in enumerate(evaluation.params.catIds) if present[k]}
        return MaskAP(ap=float(precision[:, :, present].mean()), ap50=float(precision[at_50][:, present].mean()),
                      per_class=per_class, num_images=len(self._images))


def mask_ap(predictions, ground_truths, max_detections: int = 100) -> MaskAP:
    """Mask AP of a list of images.

    Args:
        predictions: per image (masks (K, H, W) bool, classes (K,), scores (K,)).
        ground_truths: per image (masks (N, H, W) bool, classes (N,)), in the same order.
    """
    if len(predictions) != len(ground_truths):
        raise DataError(f"mask AP: {len(predictions)} images of predictions but {len(ground_truths)} of ground truth")
    accumulator = MaskAPAccumulator(max_detections)
    for (masks, classes, scores), (truth_masks, truth_classes) in zip(predictions, ground_truths):
        accumulator.add(masks, classes, scores, truth_masks, truth_classes)
    return accumulator.compute()
