"""mIoU of a segmenter on one or more domains, one confusion matrix per domain."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from gkd_deploy.data.base import SegmentationDataset
from gkd_deploy.data.classes import ClassSet
from gkd_deploy.data.registry import LABELLED, DatasetSpec, build_domains, parse_dataset_list
from gkd_deploy.data.transforms import eval_transform
from gkd_deploy.devices import resolve_device
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.inference import InferenceMode, predict_logits, resize_scores
from gkd_deploy.metrics import SegmentationMetric
from gkd_deploy.progress import Track, no_progress

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DomainResult:
    """Scores of one domain in percent; `iou` maps class name -> IoU (NaN: class absent)."""

    domain: str
    num_images: int
    miou: float
    pixel_accuracy: float
    iou: dict[str, float]


@dataclass(frozen=True)
class EvalReport:
    model: str
    mode: InferenceMode
    class_names: tuple[str, ...]
    domains: tuple[DomainResult, ...]

    @property
    def mean_miou(self) -> float:
        values = [d.miou for d in self.domains if not math.isnan(d.miou)]
        return sum(values) / len(values) if values else math.nan

    def to_dict(self) -> dict:
        # JSON has no NaN: absent classes become null.
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 4)

        return {
            "model": self.model,
            "mode": asdict(self.mode),
            "mean_miou": clean(self.mean_miou),
            "domains": [
                {"domain": d.domain, "num_images": d.num_images, "miou": clean(d.miou),
                 "pixel_accuracy": clean(d.pixel_accuracy), "iou": {k: clean(v) for k, v in d.iou.items()}}
                for d in self.domains
            ],
        }


def check_class_sets(model_classes: ClassSet, dataset_classes: ClassSet, domain: str) -> None:
    if model_classes.names != dataset_classes.names:
        raise DataError(
            f"domain '{domain}' is labelled with {dataset_classes.num_classes} {dataset_classes.name} classes, but the "
            f"model predicts {model_classes.num_classes} {model_classes.name} classes; evaluate on data of the model's class set"
        )


Predict = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) float 0..255 -> (B, K, H, W) scores


def eval_domains(targets: Sequence[DatasetSpec | str] | str, split: str = "val") -> dict[str, SegmentationDataset]:
    """The target domains, each with its test-time resize (the loader's default, the folder's
    `gkd-dataset.json`, or the entry's own `eval_size`); labels stay at full resolution."""
    domains: dict[str, SegmentationDataset] = {}
    for spec in parse_dataset_list(targets):
        for name, dataset in build_domains(spec, split=split).items():
            if name in domains:
                raise ConfigError(f"two target data sets give a domain named {name!r}; name them apart with "
                                  f"NAME:DOMAIN=PATH")
            dataset.transform = eval_transform(dataset.eval_size)
            domains[name] = dataset
    return domains


def score_class_indices(dataset: Dataset, metric: SegmentationMetric, class_set: ClassSet) -> list[int] | None:
    """The classes a domain's mIoU averages: all (None), those its labels hold, or the named ones."""
    chosen = getattr(dataset, "score_classes", None)
    if chosen is None:
        return None
    if chosen == LABELLED:
        return metric.labelled_classes()
    unknown = [name for name in chosen if name not in class_set.names]
    if unknown:
        raise ConfigError(f"score_classes {', '.join(unknown)} are not {class_set.name} classes; "
                          f"the classes are: {', '.join(class_set.names)}")
    return [class_set.names.index(name) for name in chosen]


def domain_batches(dataset: Dataset, num_workers: int, track: Track, description: str) -> Iterable[dict]:
    """One image at a time: images of one domain may differ in size and are scored at full resolution."""
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers, persistent_workers=False)
    return track(loader, description, len(dataset))


@torch.inference_mode()
def evaluate_domain(
    predict: Predict,
    dataset: Dataset,
    *,
    num_classes: int,
    mode: InferenceMode,
    num_workers: int = 2,
    track: Track = no_progress,
    description: str = "",
) -> tuple[SegmentationMetric, int]:
    """Run a predictor over a labelled dataset; return the filled metric and the image count."""
    metric = SegmentationMetric(num_classes)
    count = 0
    for batch in domain_batches(dataset, num_workers, track, description):
        images = batch["image"].float()
        logits = resize_scores(predict_logits(predict, images, mode), batch["label"].shape[-2:])
        metric.update(logits.argmax(dim=1).cpu(), batch["label"])
        count += images.shape[0]
    return metric, count


def module_predictor(model: torch.nn.Module, device: torch.device) -> Predict:
    model = model.to(device).eval()
    return lambda images: model(images.to(device, non_blocking=True))


def tensor_predictor(predictor) -> Predict:
    """A runtime predictor (numpy in and out) on torch tensors: through its `forward` where it has
    one (torch and TensorRT keep the scores on their device), else through host arrays."""
    forward = getattr(predictor, "forward", None)
    if forward is not None:
        return forward
    return lambda images: torch.from_numpy(predictor(images.detach().cpu().numpy()))


def evaluate(
    model: torch.nn.Module | Predict,
    domains: Mapping[str, Dataset],
    *,
    class_set: ClassSet,
    mode: InferenceMode,
    device: str = "auto",
    num_workers: int = 2,
    track: Track = no_progress,
    model_name: str = "",
) -> EvalReport:
    """mIoU and per-class IoU of `model` (a torch module, a runtime predictor, or a function from
    image tensors to score tensors) on every domain
    (a labelled `SegmentationDataset` each)."""
    if isinstance(model, torch.nn.Module):
        predict = module_predictor(model, resolve_device(device))
    else:  # a runtime predictor (numpy in and out, with its ModelInfo) or a function on tensors
        predict = tensor_predictor(model) if hasattr(model, "info") else model
    for name, dataset in domains.items():
        check_class_sets(class_set, dataset.class_set, name)
        if not getattr(dataset, "labeled", True):
            raise DataError(f"domain '{name}' has no labels; mIoU needs a labelled data set")
    results = []
    for name, dataset in domains.items():
        metric, count = evaluate_domain(predict, dataset, num_classes=class_set.num_classes, mode=mode,
                                        num_workers=num_workers, track=track, description=name)
        scores = metric.compute(score_class_indices(dataset, metric, class_set))
        log.info("%s: mIoU %.2f over %d images", name, scores.miou, count)
        results.append(DomainResult(domain=name, num_images=count, miou=scores.miou,
                                    pixel_accuracy=scores.pixel_accuracy,
                                    iou=dict(zip(class_set.names, scores.iou))))
    return EvalReport(model=model_name, mode=mode, class_names=class_set.names, domains=tuple(results))
