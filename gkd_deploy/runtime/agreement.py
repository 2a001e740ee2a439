"""How far one model's outputs drift from a reference's: the one comparison behind the export
check (ONNX file vs PyTorch), the engine check (TensorRT vs ONNX Runtime) and `gkd validate`
(label agreement over whole domains); for instance models, their instances matched by class and
mask IoU (`InstanceAgreement`, `compare_instance_predictors`). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gkd_deploy.runtime.base import InstancePredictor, Predictor, labels_of


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


# Instances scoring under this on both sides are never looked for: a random or untrained model's
# top-K slots are filled with near-empty masks of score ~0, which say nothing about the file.
SCORE_FLOOR = 0.02
# A found instance: the same class and at least this mask IoU (COCO's loosest threshold).
MIN_MATCH_IOU = 0.5


@dataclass
class InstanceAgreement:
    """Two instance models on the same images, compared instance by instance, not slot by slot.

    Near-equal scores swap top-k slots under small numeric noise (int8, fp16, another runtime's
    kernels), so each image's instances are matched: same class, greedily by mask IoU (highest
    first). An instance of either side must be found in the other (same class, IoU >= 0.5) when it
    scores at least `SCORE_FLOOR` and is clear of the other side's top-k cut. The cut is on the
    class probability p (`instance.postprocess`), which the outputs do not carry; but a non-empty
    mask's score is p times a mean mask probability above the threshold t, so p lies in
    [score, score / t), and the other side's k-th p is below min(score / t) over its non-empty
    masks. An instance scoring more than `margin` (the score tolerance: how far noise may move a
    score) above that bound would have been kept by the other side. Reported: the share of the
    required instances that were found (`matched`), the mean mask IoU of the found pairs
    (`mask_iou`, percent) and their score differences.
    """

    margin: float = 0.0
    mask_threshold: float = 0.5
    images: int = 0
    required: int = 0
    found: int = 0
    iou_sum: float = 0.0
    max_diff: float = 0.0
    diff_sum: float = 0.0
    pairs: int = 0

    def add(self, reference: tuple[np.ndarray, np.ndarray, np.ndarray],
            other: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Masks (B, K, H, W), classes (B, K), scores (B, K) of both models on the same B images."""
        for image in range(len(reference[0])):
            self._add_image(*(np.asarray(part[image]) for part in (*reference, *other)))
        self.images += len(reference[0])

    def _add_image(self, masks: np.ndarray, classes: np.ndarray, scores: np.ndarray, other_masks: np.ndarray,
                   other_classes: np.ndarray, other_scores: np.ndarray) -> None:
        iou = mask_iou(masks, other_masks)
        iou[classes[:, None] != other_classes[None, :]] = -1.0  # another class never matches
        partner = _greedy_match(iou)
        required = self._required(scores, other_masks, other_scores)
        other_required = self._required(other_scores, masks, scores)
        self.required += int(required.sum() + other_required.sum())
        for index, match in enumerate(partner):
            found = match >= 0 and iou[index, match] >= MIN_MATCH_IOU
            counted = int(required[index]) + (int(other_required[match]) if match >= 0 else 0)
            if not found or not counted:
                continue
            self.found += counted
            difference = abs(float(other_scores[match]) - float(scores[index]))
            self.iou_sum += float(iou[index, match])
            self.max_diff = max(self.max_diff, difference)
            self.diff_sum += difference
            self.pairs += 1

    def _required(self, scores: np.ndarray, other_masks: np.ndarray, other_scores: np.ndarray) -> np.ndarray:
        """Which instances the other model must have: above the floor and clear of its top-k cut."""
        kept = other_masks.any(axis=(1, 2))
        cut = float(other_scores[kept].min()) / self.mask_threshold if kept.any() else 0.0
        return (scores >= SCORE_FLOOR) & (scores > cut + self.margin)

    @property
    def matched(self) -> float:
        """Percent of the required instances found in the other model (100 when none is required)."""
        return 100.0 * self.found / self.required if self.required else 100.0

    @property
    def mask_iou(self) -> float:
        """Mean mask IoU of the found pairs, percent (100 when there are none)."""
        return 100.0 * self.iou_sum / self.pairs if self.pairs else 100.0

    @property
    def max_abs_diff(self) -> float:
        return self.max_diff

    @property
    def mean_abs_diff(self) -> float:
        return self.diff_sum / self.pairs if self.pairs else 0.0


def compare_instance_predictors(reference: InstancePredictor, other: InstancePredictor, images: np.ndarray, *,
                                margin: float, mask_threshold: float, batch_size: int = 4) -> InstanceAgreement:
    """Run both instance models on `images` ((N, 3, H, W) float32, their input size) and match
    their instances (`InstanceAgreement` with `margin` and `mask_threshold`)."""
    agreement = InstanceAgreement(margin=margin, mask_threshold=mask_threshold)
    images = np.ascontiguousarray(images, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        agreement.add(reference(batch), other(batch))
    return agreement


def mask_iou(masks: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(K, H, W) and (L, H, W) boolean masks -> (K, L) IoU; two empty masks agree (IoU 1)."""
    pixels = int(np.prod(masks.shape[1:]))
    first = masks.reshape(len(masks), pixels).astype(np.float32)
    second = other.reshape(len(other), pixels).astype(np.float32)
    intersection = first @ second.T
    union = first.sum(1)[:, None] + second.sum(1)[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1.0), 1.0)


def _greedy_match(iou: np.ndarray) -> np.ndarray:
    """Each row's partner column (-1: none), pairs taken in order of IoU, each column once; pairs of
    negative IoU (other classes) are never taken."""
    partner = np.full(iou.shape[0], -1)
    taken = np.zeros(iou.shape[1], bool)
    rows, columns = np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)
    for row, column in zip(rows, columns):
        if iou[row, column] < 0:
            break
        if partner[row] < 0 and not taken[column]:
            partner[row], taken[column] = column, True
    return partner

