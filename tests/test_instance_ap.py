"""Mask AP through pycocotools on cases small enough to score by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gkd_deploy.errors import DataError
from gkd_deploy.instance import MaskAPAccumulator, mask_ap

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

SIZE = 20


def box(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top:top + height, left:left + width] = True
    return mask


def truth(*masks_and_classes) -> tuple[np.ndarray, np.ndarray]:
    masks, classes = zip(*masks_and_classes)
    return np.stack(masks), np.array(classes)


def predicted(*masks_classes_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not masks_classes_scores:
        return np.zeros((0, SIZE, SIZE), dtype=bool), np.zeros(0, dtype=np.int64), np.zeros(0)
    masks, classes, scores = zip(*masks_classes_scores)
    return np.stack(masks), np.array(classes), np.array(scores)


A, B, C = box(0, 0, 10, 10), box(10, 10, 10, 10), box(0, 12, 5, 8)


def test_perfect_predictions_score_one():
    truths = [truth((A, 0), (B, 1)), truth((C, 1))]
    predictions = [predicted((A, 0, 0.9), (B, 1, 0.8)), predicted((C, 1, 0.5))]
    result = mask_ap(predictions, truths)
    assert result.num_images == 2
    assert (result.ap, result.ap50) == pytest.approx((1.0, 1.0))  # COCOeval's precision is tp / (tp + fp + eps)
    assert result.per_class == pytest.approx({0: 1.0, 1: 1.0})


def test_an_overlap_of_iou_062_counts_at_three_of_ten_thresholds():
    partial = A.copy()
    partial[6:, :] = False  # 60 of A's 100 pixels ...
    partial[6, :2] = True  # ... plus 2: IoU 0.62, between the thresholds 0.60 and 0.65
    assert (partial & A).sum() / (partial | A).sum() == pytest.approx(0.62)
    result = mask_ap([predicted((partial, 0, 0.9))], [truth((A, 0))])
    assert result.ap == pytest.approx(3 / 10)  # matched at 0.50, 0.55, 0.60 only
    assert result.ap50 == pytest.approx(1.0)


def test_a_false_positive_ranked_above_the_true_positive_halves_precision():
    truths = [truth((A, 0))]
    above = mask_ap([predicted((B, 0, 0.9), (A, 0, 0.8))], truths)
    assert above.ap == pytest.approx(0.5) and above.ap50 == pytest.approx(0.5)  # precision 1/2 at recall 1
    below = mask_ap([predicted((B, 0, 0.7), (A, 0, 0.8))], truths)
    assert below.ap == pytest.approx(1.0)  # found after full recall, it costs nothing


def test_half_the_instances_found_scores_51_of_101_recall_points():
    result = mask_ap([predicted((A, 0, 0.9))], [truth((A, 0), (B, 0))])
    assert result.ap == pytest.approx(51 / 101)  # precision 1 at recalls 0, 0.01, ..., 0.50; 0 beyond


def test_a_missing_class_counts_zero_and_a_class_without_truth_does_not_count():
    truths = [truth((A, 0), (B, 1))]
    result = mask_ap([predicted((A, 0, 0.9), (C, 2, 0.9))], truths)
    assert result.per_class == pytest.approx({0: 1.0, 1: 0.0})
    assert result.ap == pytest.approx(0.5) and result.ap50 == pytest.approx(0.5)


def test_no_predictions_score_zero_and_no_truth_is_undefined():
    result = mask_ap([predicted(), predicted()], [truth((A, 0)), truth((B, 1))])
    assert (result.ap, result.ap50, result.per_class) == (0.0, 0.0, {0: 0.0, 1: 0.0})
    empty_truth = (np.zeros((0, SIZE, SIZE), dtype=bool), np.zeros(0, dtype=np.int64))
    assert math.isnan(mask_ap([predicted((A, 0, 0.5))], [empty_truth]).ap)


def test_images_accumulate_from_torch_tensors():
    accumulator = MaskAPAccumulator()
    for mask, label in ((A, 0), (B, 1)):
        accumulator.add(torch.from_numpy(mask)[None], torch.tensor([label]), torch.tensor([0.9]),
                        torch.from_numpy(mask)[None], torch.tensor([label]))
    accumulator.add(torch.zeros(0, SIZE, SIZE, dtype=torch.bool), torch.zeros(0), torch.zeros(0),
                    torch.from_numpy(C)[None], torch.tensor([1]))
    result = accumulator.compute()
    assert result.num_images == 3
    assert result.per_class == pytest.approx({0: 1.0, 1: 51 / 101})


def test_mismatched_sizes_are_named():
    with pytest.raises(DataError, match="image 1: predicted masks"):
        mask_ap([predicted((A, 0, 0.5))], [(np.zeros((1, 8, 8), dtype=bool), np.array([0]))])
    with pytest.raises(DataError, match="1 images of predictions but 2"):
        mask_ap([predicted()], [truth((A, 0)), truth((B, 0))])
