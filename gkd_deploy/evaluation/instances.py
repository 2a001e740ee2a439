"""Mask AP of an instance segmenter per domain (`gkd eval`), and of an export against it (`gkd validate`).

Every image is resized (bilinear) to the model's input size, the model gives its K instances there,
and the masks are brought back to the label's size (nearest) before COCO mask AP
(`instance.MaskAPAccumulator`). Whole images rather than sliding windows: an instance can span
several windows, and a file's K instances are of the whole input. An exported file has one input
size (its own); a checkpoint runs at its config's `img_size` on the short side (the long side in
proportion, both multiples of the patch) unless a size is given. `gkd validate` runs PyTorch at the
exported size too, so the AP delta measures the export alone. AP values are in points (percent).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from gkd_deploy.data.instances import CityscapesInstanceDataset, InstanceDataset
from gkd_deploy.data.instances.coco import coco_split
from gkd_deploy.data.registry import DatasetSpec, parse_dataset_list
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.comparison import DomainComparison, ValidationReport
from gkd_deploy.instance.ap import MaskAP, MaskAPAccumulator
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.runtime.base import InstancePredictor

log = logging.getLogger(__name__)

# Data set name -> the loader of its instance annotations (`NAME=PATH` as for semantic targets):
# (root, split, name=...) -> the split. `coco` also reads ADE20K's instance release (`coco_split`).
INSTANCE_LOADERS: dict[str, Callable[..., InstanceDataset]] = {"cityscapes": CityscapesInstanceDataset,
                                                               "coco": coco_split}


def instance_domains(targets: Sequence[DatasetSpec | str] | str, split: str = "val") -> dict[str, InstanceDataset]:
    """{domain name: instance data set} for `targets` (NAME[:DOMAIN]=PATH entries)."""
    domains: dict[str, InstanceDataset] = {}
    for spec in parse_dataset_list(targets):
        loader = INSTANCE_LOADERS.get(spec.name)
        if loader is None:
            raise ConfigError(f"{spec.name!r} has no instance loader; an instance model is scored on "
                              f"{', '.join(INSTANCE_LOADERS)} data (e.g. --targets cityscapes=data/cityscapes-synth)")
        name = spec.domain or spec.name
        if name in domains:
            raise ConfigError(f"two target data sets give a domain named {name!r}; name them apart with NAME:DOMAIN=PATH")
        domains[name] = loader(spec.path, split, name=name)
    return domains


def checkpoint_input_size(img_size: int, patch_size: int, height: int, width: int) -> tuple[int, int]:
    """A checkpoint's input for an image of height x width: `img_size` on the short side, the long
    side in proportion, both rounded to multiples of the patch."""
    scale = img_size / min(height, width)
    return (max(patch_size, round(height * scale / patch_size) * patch_size),
            max(patch_size, round(width * scale / patch_size) * patch_size))


def _resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, h, w) bool -> (K, height, width) by nearest neighbour (pixel centres)."""
    rows = np.minimum(((np.arange(height) + 0.5) * masks.shape[1] / height).astype(np.int64), masks.shape[1] - 1)
    columns = np.minimum(((np.arange(width) + 0.5) * masks.shape[2] / width).astype(np.int64), masks.shape[2] - 1)
    return masks[:, rows][:, :, columns]


def predict_image(predictor: InstancePredictor, image: np.ndarray,
                  input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> masks (K, H, W) bool, classes (K,), scores (K,) of one image run at `input_size`."""
    height, width = image.shape[:2]
    resized = cv2.resize(image, (input_size[1], input_size[0]), interpolation=cv2.INTER_LINEAR)
    batch = resized.transpose(2, 0, 1)[None].astype(np.float32)
    masks, classes, scores = predictor(batch)
    return _resize_masks(masks[0], height, width), classes[0], scores[0]


def domain_mask_ap(predictors: Sequence[InstancePredictor], dataset: InstanceDataset,
                   input_size: tuple[int, int] | None, track: Track = no_progress,
                   description: str = "") -> list[MaskAP]:
    """Mask AP of each predictor on one domain, reading every image once. `input_size` None: each
    predictor's own (an exported file's), else a checkpoint's (`checkpoint_input_size`)."""
    accumulators = [MaskAPAccumulator() for _ in predictors]
    for index in track(range(len(dataset)), description, len(dataset)):
        sample = dataset[index]
        for predictor, accumulator in zip(predictors, accumulators):
            size = input_size or _own_input_size(predictor, sample.image.shape[:2])
            masks, classes, scores = predict_image(predictor, sample.image, size)
            accumulator.add(masks, classes, scores, sample.target.masks, sample.target.classes)
    return [accumulator.compute() for accumulator in accumulators]


def _own_input_size(predictor: InstancePredictor, image_size: tuple[int, int]) -> tuple[int, int]:
    if predictor.info.input_size is not None:
        return predictor.info.input_size
    config = predictor.model.config
    return checkpoint_input_size(config.img_size, config.patch_size, *image_size)


def _points(value: float) -> float:
    return value * 100.0


@dataclass(frozen=True)
class InstanceDomainResult:
    """Mask AP and AP50 of one domain in points; `ap_per_class`: class name -> AP (classes with ground truth)."""

    domain: str
    num_images: int
    ap: float
    ap50: float
    ap_per_class: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceEvalReport:
    model: str
    input_size: tuple[int, int] | None  # None: each image at the checkpoint's size for it
    class_names: tuple[str, ...]
    domains: tuple[InstanceDomainResult, ...]

    @property
    def mean_ap(self) -> float:
        values = [d.ap for d in self.domains if not math.isnan(d.ap)]
        return sum(values) / len(values) if values else math.nan

    def to_dict(self) -> dict:
        return {"model": self.model, "task": "instance",
                "input_size": list(self.input_size) if self.input_size else None, "mean_ap": _clean(self.mean_ap),
                "domains": [{"domain": d.domain, "num_images": d.num_images, "ap": _clean(d.ap), "ap50": _clean(d.ap50),
                             "ap_per_class": {k: _clean(v) for k, v in d.ap_per_class.items()}}
                            for d in self.domains]}


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _check_classes(predictor: InstancePredictor, dataset: InstanceDataset, domain: str) -> None:
    if tuple(predictor.info.class_set.names) != tuple(dataset.class_names):
        raise DataError(f"domain '{domain}' is annotated with the classes {', '.join(dataset.class_names)}, but the "
                        f"model predicts {', '.join(predictor.info.class_set.names)}; evaluate on data of its classes")


def evaluate_instances(predictor: InstancePredictor, domains: dict[str, InstanceDataset], *,
                       input_size: tuple[int, int] | None = None, track: Track = no_progress,
                       model_name: str = "") -> InstanceEvalReport:
    """Mask AP and AP50 of `predictor` on every domain."""
    for name, dataset in domains.items():
        _check_classes(predictor, dataset, name)
    names = predictor.info.class_set.names
    results = []
    for name, dataset in domains.items():
        (scores,) = domain_mask_ap([predictor], dataset, input_size, track, name)
        log.info("%s: mask AP %.2f, AP50 %.2f over %d images", name, _points(scores.ap), _points(scores.ap50),
                 scores.num_images)
        results.append(InstanceDomainResult(name, scores.num_images, _points(scores.ap), _points(scores.ap50),
                                            {names[k]: _points(v) for k, v in scores.per_class.items()}))
    return InstanceEvalReport(model_name, input_size or predictor.info.input_size, tuple(names), tuple(results))


@dataclass(frozen=True)
class InstanceDomainComparison(DomainComparison):
    """PyTorch and exported mask AP (as `reference_miou` / `exported_miou`, in points) of one domain, and AP50."""

    reference_ap50: float = math.nan
    exported_ap50: float = math.nan


@dataclass(frozen=True)
class InstanceValidationReport(ValidationReport):
    """`ValidationReport` gated on the mask AP delta (points) instead of the mIoU delta."""

    def to_dict(self) -> dict:
        return {"model": self.model, "reference": self.reference, "precision": self.precision,
                "backend": self.backend, "task": "instance", "metric": "mask AP", "tolerance": self.tolerance,
                "passed": self.passed,
                "domains": [{"domain": d.domain, "num_images": d.num_images, "reference_ap": _clean(d.reference_miou),
                             "exported_ap": _clean(d.exported_miou), "delta": _clean(d.delta),
                             "reference_ap50": _clean(d.reference_ap50), "exported_ap50": _clean(d.exported_ap50)}
                            for d in self.domains]}


def compare_instances(reference: InstancePredictor, exported: InstancePredictor, domains: dict[str, InstanceDataset],
                      track: Track = no_progress) -> tuple[InstanceDomainComparison, ...]:
    """Both models on the same images at the exported input size, per domain."""
    comparisons = []
    for name, dataset in domains.items():
        _check_classes(exported, dataset, name)
        reference_ap, exported_ap = domain_mask_ap([reference, exported], dataset, exported.info.input_size, track, name)
        comparisons.append(InstanceDomainComparison(
            domain=name, num_images=exported_ap.num_images, reference_miou=_points(reference_ap.ap),
            exported_miou=_points(exported_ap.ap), pixel_agreement=math.nan,
            reference_ap50=_points(reference_ap.ap50), exported_ap50=_points(exported_ap.ap50)))
    return tuple(comparisons)

