import math

import numpy as np
import pytest
import torch

from gkd_deploy.metrics import SegmentationMetric


def reference_iou(preds, targets, num_classes, ignore=255):
    """Per-class IoU by set counting over all pixels of all images (no confusion matrix)."""
    pred = np.concatenate([p.ravel() for p in preds])
    target = np.concatenate([t.ravel() for t in targets])
    keep = target != ignore
    pred, target = pred[keep], target[keep]
    ious = []
    for c in range(num_classes):
        intersection = np.sum((pred == c) & (target == c))
        union = np.sum((pred == c) | (target == c))
        ious.append(math.nan if union == 0 else intersection / union * 100)
    return ious


def test_matches_independent_formulation_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    num_classes = 7
    preds, targets = [], []
    metric = SegmentationMetric(num_classes)
    for _ in range(5):
        # Classes 0..4 only: 5 and 6 absent from both, so they must be NaN and left out of the mean.
        target = rng.integers(0, 5, size=(2, 13, 17))
        target[rng.random(target.shape) < 0.2] = 255
        pred = np.where(rng.random(target.shape) < 0.6, np.where(target == 255, 0, target), rng.integers(0, 5, target.shape))
        preds.append(pred)
        targets.append(target)
        metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    result = metric.compute()
    expected = reference_iou(preds, targets, num_classes)
    for got, want in zip(result.iou, expected):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-9)
    assert math.isnan(result.iou[5]) and math.isnan(result.iou[6])
    assert result.miou == pytest.approx(np.mean(expected[:5]), abs=1e-9)
    assert result.present_classes() == [0, 1, 2, 3, 4]


def test_class_predicted_but_absent_from_target_counts_as_zero():
    metric = SegmentationMetric(3)
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])  # class 2 predicted, never in target: IoU 0, in the mean
    metric.update(pred, target)
    result = metric.compute()
    assert result.iou == pytest.approx((50.0, 100.0, 0.0))
    assert result.miou == pytest.approx(50.0)
    assert result.pixel_accuracy == pytest.approx(75.0)


def test_known_values_and_ignore():
    metric = SegmentationMetric(2)
    metric.update(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 255, 1]))
    result = metric.compute()
    # class 0: TP 1, FP 1, FN 0 -> 50; class 1: TP 2, FP 0, FN 1 -> 66.67
    assert result.iou == pytest.approx((50.0, 200 / 3))
    assert result.num_pixels == 4


def test_rejects_out_of_range_labels_and_shape_mismatch():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match="target holds values"):
        metric.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ValueError, match="pixels"):
        metric.update(np.array([0, 1, 2]), np.array([0, 1]))


def test_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    a, b, whole = SegmentationMetric(4), SegmentationMetric(4), SegmentationMetric(4)
    for metric in (a, b):
        pred, target = rng.integers(0, 4, (8, 8)), rng.integers(0, 4, (8, 8))
        metric.update(pred, target)
        whole.update(pred, target)
    a.merge(b)
    assert torch.equal(a.confusion, whole.confusion)


def test_empty_metric_is_nan():
    result = SegmentationMetric(3).compute()
    assert math.isnan(result.miou)
