"""One comparison (runtime.agreement) and one way to run a model (the predictors), with the
options the benchmark needs."""

import numpy as np
import pytest
import torch

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.runtime.agreement import Agreement, compare_predictors
from gkd_deploy.runtime.base import ModelInfo, labels_of
from gkd_deploy.runtime.torch_backend import TorchPredictor
from gkd_deploy.data.classes import CITYSCAPES


class Fixed:
    """A predictor returning given scores, or labels only."""

    def __init__(self, scores, labels_only=False):
        self.scores = scores
        outputs = ("labels",) if labels_only else ("scores", "labels")
        self.info = ModelInfo(CITYSCAPES, (2, 2), "fp32", "test", "fixed", outputs=outputs)

    def __call__(self, images):
        return self.scores[: len(images)]

    def labels(self, images):
        return labels_of(self(images))


def test_agreement_counts_score_drift_and_label_agreement():
    agreement = Agreement()
    assert agreement.max_abs_diff is None and agreement.pixel_agreement == 100.0
    agreement.add_scores(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2, 2), 0.5))
    agreement.add_labels(np.array([[[0, 1], [1, 1]]]), np.array([[[0, 1], [0, 1]]], dtype=np.uint8))
    assert agreement.max_abs_diff == 0.5 and agreement.mean_abs_diff == 0.5
    assert agreement.pixel_agreement == 75.0 and agreement.images == 1 and agreement.pixels == 4


def test_compare_predictors_uses_labels_where_a_side_has_no_scores():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 19, 2, 2)).astype(np.float32)
    images = np.zeros((3, 3, 2, 2), np.float32)
    same = compare_predictors(Fixed(scores), Fixed(scores + 1e-3), images, batch_size=2)
    assert same.max_abs_diff == pytest.approx(1e-3, rel=1e-3) and same.pixel_agreement == 100.0 and same.images == 3
    flipped = compare_predictors(Fixed(scores), Fixed(-scores, labels_only=True), images)
    assert flipped.max_abs_diff is None and flipped.pixel_agreement < 100.0
    both_labels = compare_predictors(Fixed(scores, labels_only=True), Fixed(scores), images)
    assert both_labels.max_abs_diff is None and both_labels.pixel_agreement == 100.0


def test_torch_predictor_runs_a_model_in_memory_with_autocast():
    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig("tiny-student", img_size=32)).eval()
    images = np.random.default_rng(1).uniform(0, 255, (2, 3, 32, 32)).astype(np.float32)
    fp32 = TorchPredictor.of_model(model)
    bf16 = TorchPredictor.of_model(model, precision="bf16")
    expected = model(torch.from_numpy(images)).detach().numpy()
    np.testing.assert_allclose(fp32(images), expected, rtol=1e-5, atol=1e-5)
    lower = bf16(images)
    assert lower.dtype == np.float32 and bf16.info.precision == "bf16"
    assert 0 < np.abs(lower - expected).max() < 0.1  # bfloat16 keeps ~3 digits: close, not equal
    with pytest.raises(ConfigError, match="unknown precision 'int8'"):
        TorchPredictor.of_model(model, precision="int8")


# -- instance models: matched by class and mask IoU --------------------------------------------------
def instances(specs, size=8):
    """One image's (masks (K, size, size), classes (K,), scores (K,)) from (row0, row1, class, score)
    specs: the mask covers rows row0..row1 (empty when row0 == row1)."""
    masks = np.zeros((len(specs), size, size), bool)
    for index, (first, last, _, _) in enumerate(specs):
        masks[index, first:last] = True
    classes = np.array([spec[2] for spec in specs], np.int64)
    scores = np.array([spec[3] for spec in specs], np.float32)
    return masks[None], classes[None], scores[None]


REFERENCE = [(0, 2, 0, 0.90), (2, 5, 1, 0.62), (5, 8, 2, 0.61), (0, 1, 3, 0.05), (0, 0, 4, 0.0)]


def test_swapped_slots_of_near_equal_scores_still_match():
    from gkd_deploy.runtime.agreement import InstanceAgreement

    swapped = [REFERENCE[0], (5, 8, 2, 0.63), (2, 5, 1, 0.60), *REFERENCE[3:]]  # slots 1 and 2 trade places
    agreement = InstanceAgreement(margin=0.05)
    agreement.add(instances(REFERENCE), instances(swapped))
    assert agreement.required == 6 and agreement.matched == 100.0 and agreement.mask_iou == 100.0
    assert agreement.max_abs_diff == pytest.approx(0.02, abs=1e-6)
    slots = Agreement()  # the slot-by-slot measure counts the swap as mask pixels that disagree
    slots.add_labels(instances(REFERENCE)[0], instances(swapped)[0])
    assert slots.pixel_agreement < 90.0


def test_a_lost_instance_a_changed_class_and_a_moved_mask_are_counted():
    from gkd_deploy.runtime.agreement import InstanceAgreement

    other = [(0, 2, 0, 0.90), (2, 5, 3, 0.62), (6, 8, 2, 0.61), (0, 1, 3, 0.05), (0, 0, 4, 0.0)]
    agreement = InstanceAgreement(margin=0.05)
    agreement.add(instances(REFERENCE), instances(other))
    # Class 1 became class 3 (neither side's instance is found: 2 of 6 lost); rows 5-8 -> 6-8: IoU 2/3.
    assert agreement.required == 6 and agreement.matched == pytest.approx(400 / 6)
    assert agreement.mask_iou == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert agreement.max_abs_diff == 0.0


def test_instances_near_the_top_k_cut_or_under_the_floor_need_not_be_found():
    from gkd_deploy.runtime.agreement import SCORE_FLOOR, InstanceAgreement

    # The other side's lowest non-empty score is 0.05, so its k-th class probability is below 0.1
    # (mask threshold 0.5): a 0.12 instance may fairly fall out of its top k with a margin of 0.05.
    reference = [(0, 2, 0, 0.90), (2, 5, 1, 0.12), (5, 8, 2, SCORE_FLOOR / 2)]
    other = [(0, 2, 0, 0.90), (5, 6, 5, 0.05), (0, 0, 4, 0.0)]
    agreement = InstanceAgreement(margin=0.05)
    agreement.add(instances(reference), instances(other))
    assert agreement.required == 2 and agreement.matched == 100.0  # the 0.90 instance, both ways
    strict = InstanceAgreement(margin=0.0)
    strict.add(instances(reference), instances(other))
    # Now the 0.12 instance is missed, and so is the other side's 0.05 one (the reference's lowest
    # non-empty score, 0.01, puts its cut under 0.02).
    assert strict.required == 4 and strict.matched == 50.0


def test_mask_iou_of_empty_masks():
    from gkd_deploy.runtime.agreement import mask_iou

    empty, full = np.zeros((1, 2, 2), bool), np.ones((1, 2, 2), bool)
    assert mask_iou(empty, empty).tolist() == [[1.0]] and mask_iou(empty, full).tolist() == [[0.0]]
    half = np.array([[[True, False], [True, False]]])
    assert mask_iou(half, full).tolist() == [[0.5]]
