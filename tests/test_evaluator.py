import math

import pytest
import torch
from torch.utils.data import Dataset

from gkd_deploy.data.classes import CITYSCAPES, ISPRS, ClassSet
from gkd_deploy.errors import DataError
from gkd_deploy.evaluation.evaluator import evaluate
from gkd_deploy.evaluation.inference import InferenceMode

THREE = ClassSet("three", ("a", "b", "c"), ((0, 0, 0), (1, 1, 1), (2, 2, 2)))


class EncodedLabels(Dataset):
    """Images whose red channel is 10 x label: a model can read the answer off the pixels."""

    def __init__(self, labels, class_set=THREE, labeled=True):
        self.labels = labels
        self.class_set = class_set
        self.labeled = labeled

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        label = self.labels[index]
        image = torch.zeros(3, *label.shape, dtype=torch.uint8)
        image[0] = torch.where(label == 255, 0, label * 10).to(torch.uint8)
        return {"image": image, "label": label, "name": str(index)}


def oracle(images):
    label = (images[:, 0] / 10).round().long().clamp(0, 2)
    return torch.nn.functional.one_hot(label, 3).permute(0, 3, 1, 2).float()


def always_class_zero(images):
    logits = torch.zeros(images.shape[0], 3, *images.shape[-2:])
    logits[:, 0] = 1
    return logits


class Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, images):
        return self.fn(images)


def labels():
    first = torch.tensor([[0, 0, 1, 1], [0, 255, 1, 1]])
    second = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]])  # another size; class 2 absent
    return [first, second]


@pytest.mark.parametrize("mode", [InferenceMode("whole", multiple=1, crop=2), InferenceMode("slide", crop=2, stride=1, multiple=1)])
def test_oracle_scores_100_and_constant_model_scores_by_hand(mode):
    domains = {"a": EncodedLabels(labels())}
    report = evaluate(Wrap(oracle), domains, class_set=THREE, mode=mode, device="cpu", num_workers=0)
    assert report.domains[0].miou == pytest.approx(100.0)
    assert math.isnan(report.domains[0].iou["c"])
    report = evaluate(Wrap(always_class_zero), domains, class_set=THREE, mode=mode, device="cpu", num_workers=0)
    # 19 scored pixels: 12 of class 0 (all predicted 0), 7 of class 1 (predicted 0).
    # IoU(0) = 12 / 19, IoU(1) = 0, class 2 absent -> mean of two.
    assert report.domains[0].iou["a"] == pytest.approx(1200 / 19)
    assert report.domains[0].iou["b"] == 0.0
    assert report.domains[0].miou == pytest.approx(600 / 19)
    assert report.domains[0].num_images == 2
    as_json = report.to_dict()
    assert as_json["domains"][0]["iou"]["c"] is None


def test_several_domains_and_mean():
    domains = {"one": EncodedLabels(labels()), "two": EncodedLabels(labels()[:1])}
    report = evaluate(Wrap(oracle), domains, class_set=THREE, mode=InferenceMode("whole", multiple=1, crop=2),
                      device="cpu", num_workers=0)
    assert [d.domain for d in report.domains] == ["one", "two"]
    assert report.mean_miou == pytest.approx(100.0)


def test_class_set_mismatch_and_unlabelled_data_are_refused():
    mode = InferenceMode("whole", multiple=1, crop=2)
    with pytest.raises(DataError, match="6 isprs classes.*19 cityscapes"):
        evaluate(Wrap(oracle), {"potsdam": EncodedLabels(labels(), class_set=ISPRS)}, class_set=CITYSCAPES, mode=mode,
                 device="cpu", num_workers=0)
    with pytest.raises(DataError, match="no labels"):
        evaluate(Wrap(oracle), {"proxy": EncodedLabels(labels(), labeled=False)}, class_set=THREE, mode=mode,
                 device="cpu", num_workers=0)
