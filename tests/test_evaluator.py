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


# --- the authors' test-time resize and per-data-set class subsets --------------------------------

def test_eval_sizes_follow_mmcv_keep_ratio_rescale():
    from gkd_deploy.data.datasets.acdc import ACDCDataset
    from gkd_deploy.data.datasets.bdd100k import BDD100KDataset
    from gkd_deploy.data.datasets.cityscapes import CityscapesDataset
    from gkd_deploy.data.datasets.mapillary import MapillaryDataset
    from gkd_deploy.data.transforms import fit_within

    # (height, width) of the image the model sees, for each set's native resolution.
    assert fit_within(1024, 2048, CityscapesDataset.eval_size) == (512, 1024)
    assert fit_within(720, 1280, BDD100KDataset.eval_size) == (720, 1280)
    assert fit_within(1080, 1920, ACDCDataset.eval_size) == (540, 960)
    assert fit_within(3000, 4000, MapillaryDataset.eval_size) == (512, 683)  # "at most 1024 x 512"
    assert fit_within(360, 480, CityscapesDataset.eval_size) == (512, 683)  # small images are scaled up


class ResizedEncodedLabels(EncodedLabels):
    """EncodedLabels whose image the transform halves, as the eval resize does; labels stay full size."""

    def __getitem__(self, index):
        item = super().__getitem__(index)
        item["image"] = item["image"][:, ::2, ::2].contiguous()
        return item


def test_scores_of_a_resized_image_are_scored_against_the_full_resolution_label():
    label = torch.zeros(8, 8, dtype=torch.long)
    label[:, 4:] = 1
    report = evaluate(Wrap(oracle), {"a": ResizedEncodedLabels([label])}, class_set=THREE,
                      mode=InferenceMode("whole", multiple=1, crop=2), device="cpu", num_workers=0)
    # The 4x4 prediction is resized (bilinear) to 8x8 and agrees with the label everywhere.
    assert report.domains[0].miou == pytest.approx(100.0)
    assert report.domains[0].pixel_accuracy == pytest.approx(100.0)


def test_labelled_class_subset_equals_a_hand_computation():
    # Labels hold classes 0 and 1 only; the model also predicts class 2 on two pixels.
    label = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])

    def model(images):
        prediction = torch.tensor([[0, 2, 1, 1], [0, 0, 2, 1]])
        return torch.nn.functional.one_hot(prediction, 3).permute(2, 0, 1)[None].float().expand(images.shape[0], -1, -1, -1)

    dataset = EncodedLabels([label])
    mode = InferenceMode("whole", multiple=1, crop=2)
    everything = evaluate(Wrap(model), {"a": dataset}, class_set=THREE, mode=mode, device="cpu", num_workers=0)
    # IoU(0) = 3/4, IoU(1) = 3/4, IoU(2) = 0/2 (false positives only): mmseg's mean counts all three.
    assert everything.domains[0].miou == pytest.approx((75 + 75 + 0) / 3)
    dataset.score_classes = "labelled"
    labelled = evaluate(Wrap(model), {"a": dataset}, class_set=THREE, mode=mode, device="cpu", num_workers=0)
    assert labelled.domains[0].miou == pytest.approx(75.0)  # the mean over the two classes it labels
    assert labelled.domains[0].iou["c"] == 0.0  # per-class IoU still lists every class
    dataset.score_classes = ("a",)
    assert evaluate(Wrap(model), {"a": dataset}, class_set=THREE, mode=mode, device="cpu",
                    num_workers=0).domains[0].miou == pytest.approx(75.0)
    dataset.score_classes = ("a", "zebra")
    from gkd_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match="zebra are not three classes"):
        evaluate(Wrap(model), {"a": dataset}, class_set=THREE, mode=mode, device="cpu", num_workers=0)


def test_domain_names_manifests_and_per_entry_settings(tmp_path):
    import json

    import tests.fixtures_data as fx
    from gkd_deploy.data.registry import parse_dataset_list
    from gkd_deploy.errors import ConfigError
    from gkd_deploy.evaluation.evaluator import eval_domains

    first = fx.make_cityscapes(tmp_path / "cs")
    second = fx.make_cityscapes(tmp_path / "camvid")
    with pytest.raises(ConfigError, match="given twice.*NAME:DOMAIN=PATH"):
        parse_dataset_list(f"cityscapes={first},cityscapes={second}")
    domains = eval_domains([f"cityscapes={first}", {"data": f"cityscapes:camvid={second}", "eval_size": "native",
                                                     "score_classes": "labelled"}])
    assert list(domains) == ["cityscapes", "camvid"]
    assert domains["cityscapes"].transform.size == (1024, 512)  # the loader's default
    assert domains["camvid"].transform.size is None and domains["camvid"].score_classes == "labelled"
    # A folder's manifest sets its defaults; an entry's own settings still win.
    (first / "gkd-dataset.json").write_text(json.dumps({"eval_size": None}))
    assert eval_domains(f"cityscapes={first}")["cityscapes"].transform.size is None
    assert eval_domains([{"data": f"cityscapes={first}", "eval_size": "640x320"}])["cityscapes"].transform.size == (640, 320)
    acdc = eval_domains(f"acdc:night-synth={fx.make_acdc(tmp_path / 'acdc', ('night',))}")
    assert list(acdc) == ["night-synth-night"] and acdc["night-synth-night"].name == "night-synth-night"
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        eval_domains([{"data": f"cityscapes={first}", "eval_size": "big"}])
    (first / "gkd-dataset.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        eval_domains(f"cityscapes={first}")
