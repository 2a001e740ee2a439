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
