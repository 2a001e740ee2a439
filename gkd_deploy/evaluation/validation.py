"""`gkd validate`: does the exported model score what PyTorch scores, on every unseen domain?

(An instance file is gated on mask AP instead: `evaluation.instances`.)

Both models run over the same images with the same sliding windows (the exported input size),
so the only difference left is the export itself: per domain we report PyTorch mIoU, exported
mIoU, their delta and the share of pixels whose label both agree on. A delta over the tolerance
fails validation (the precision table's `miou_points`: 1 point for int8, MMDeploy's segmentation
gate; 0.1 for fp32 / fp16, which should be far closer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from gkd_deploy.data.registry import DatasetSpec
from gkd_deploy.errors import ConfigError
from gkd_deploy.evaluation.evaluator import (check_class_sets, domain_batches, eval_domains, score_class_indices,
                                            tensor_predictor)
from gkd_deploy.evaluation.inference import InferenceMode, exported_inference_mode, predict_logits, resize_scores
from gkd_deploy.evaluation.comparison import DomainComparison, ValidationOutcome, ValidationReport  # noqa: F401
from gkd_deploy.evaluation.settings import ValidateSettings
from gkd_deploy.evaluation.targets import target_specs
from gkd_deploy.fileio import write_json
from gkd_deploy.metrics import SegmentationMetric
from gkd_deploy.precision import precision
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import report_path, resolve_checkpoint, source_checkpoint_of
from gkd_deploy.runtime.agreement import Agreement
from gkd_deploy.runtime.base import Predictor, require_scores
from gkd_deploy.runtime.loader import load_predictor


ReferenceCache = dict  # (reference checkpoint, data set, windows, batch index) -> PyTorch's labels


def _dataset_key(dataset) -> tuple:
    """Which images a data set holds (its name, size, first and last sample), for the reference cache."""
    samples = getattr(dataset, "samples", None)
    if not samples:
        return (id(dataset),)
    return getattr(dataset, "name", ""), len(samples), repr(samples[0]), repr(samples[-1])


@torch.inference_mode()
def compare_domain(reference: Predictor, exported: Predictor, dataset, mode: InferenceMode, num_workers: int,
                   track: Track, description: str, cache: ReferenceCache | None = None) -> DomainComparison:
    num_classes = reference.info.class_set.num_classes
    run_reference, run_exported = tensor_predictor(reference), tensor_predictor(exported)
    reference_metric, exported_metric = SegmentationMetric(num_classes), SegmentationMetric(num_classes)
    agreement = Agreement()
    for index, batch in enumerate(domain_batches(dataset, num_workers, track, description)):
        images = batch["image"].float()
        key = (reference.info.source, _dataset_key(dataset), mode, index)
        reference_labels = cache.get(key) if cache is not None else None
        label_size = batch["label"].shape[-2:]
        if reference_labels is None:
            reference_labels = resize_scores(predict_logits(run_reference, images, mode), label_size).argmax(1).cpu()
            if cache is not None:
                cache[key] = reference_labels.to(torch.uint8 if num_classes < 256 else torch.int64)
        reference_labels = reference_labels.long()
        exported_labels = resize_scores(predict_logits(run_exported, images, mode), label_size).argmax(1).cpu()
        reference_metric.update(reference_labels, batch["label"])
        exported_metric.update(exported_labels, batch["label"])
        agreement.add_labels(reference_labels.numpy(), exported_labels.numpy())
    class_set = reference.info.class_set
    return DomainComparison(
        domain=description, num_images=agreement.images,
        reference_miou=reference_metric.compute(score_class_indices(dataset, reference_metric, class_set)).miou,
        exported_miou=exported_metric.compute(score_class_indices(dataset, exported_metric, class_set)).miou,
        pixel_agreement=agreement.pixel_agreement)


def _validate_instances(model_path: Path, reference_path: Path, reference_model, exported, targets,
                        tolerance: float | None, split: str, track: Track) -> ValidationReport:
    """The instance gate: |exported - PyTorch| mask AP per domain within the precision's `mask_ap_points`."""
    from gkd_deploy.evaluation.instances import InstanceValidationReport, compare_instances, instance_domains

    if tolerance is None:
        tolerance = precision(exported.info.precision).mask_ap_points
        if tolerance is None:
            raise ConfigError(f"no mask AP tolerance for {exported.info.precision} instance files; give --tolerance")
    comparisons = compare_instances(reference_model, exported, instance_domains(targets, split=split), track)
    return InstanceValidationReport(model=str(model_path), reference=str(reference_path),
                                    precision=exported.info.precision, backend=exported.info.backend,
                                    tolerance=tolerance, domains=comparisons)


def validate_export(
    model_path: str | Path,
    targets: Sequence[DatasetSpec | str] | str | None = None,
    settings: ValidateSettings = ValidateSettings(),
    track: Track = no_progress,
    reference_cache: ReferenceCache | None = None,
) -> ValidationOutcome:
    """Score `model_path` and the checkpoint it came from on every target domain. Validating several
    exports of one checkpoint, pass the same `reference_cache` dict to each call: PyTorch's
    predictions are then computed once."""
    model_path = Path(model_path)
    exported = load_predictor(model_path, settings.device)
    if exported.info.input_size is None:
        raise ConfigError(f"{model_path} is not an exported model; give the .onnx file or engine to validate")
    if exported.info.task == "semantic":
        require_scores(exported.info, "validation (scores averaged over sliding windows)")
    if settings.reference is None:
        metadata = getattr(exported, "metadata", None)
        reference_path = source_checkpoint_of(model_path, getattr(metadata, "source_checkpoint", None),
                                        getattr(metadata, "source_sha256", None))
    else:
        reference_path, _ = resolve_checkpoint(settings.reference)
    targets = target_specs(targets, resolve_checkpoint(reference_path)[1])  # default: the run's targets
    reference_model = load_predictor(reference_path, settings.device)
    if reference_model.info.task != exported.info.task:
        raise ConfigError(f"{model_path} is a {exported.info.task} model but {reference_path} a "
                          f"{reference_model.info.task} one; give the checkpoint it was exported from with --reference")
    if reference_model.info.class_set.names != exported.info.class_set.names:
        raise ConfigError(f"{model_path} and {reference_path} predict different classes")
    json_path = settings.json_path or report_path(model_path, "validate")
    if exported.info.task == "instance":
        report = _validate_instances(model_path, reference_path, reference_model, exported, targets,
                                     settings.tolerance, settings.split, track)
        write_json(json_path, report.to_dict())
        return ValidationOutcome(report=report, json_path=json_path)
    mode = exported_inference_mode(exported.info)
    tolerance = precision(exported.info.precision).miou_points if settings.tolerance is None else settings.tolerance
    domains = eval_domains(targets, split=settings.split)
    for name, dataset in domains.items():
        check_class_sets(exported.info.class_set, dataset.class_set, name)
    comparisons = tuple(compare_domain(reference_model, exported, dataset, mode, settings.workers, track, name,
                                       reference_cache)
                        for name, dataset in domains.items())
    report = ValidationReport(model=str(model_path), reference=str(reference_path), precision=exported.info.precision,
                              backend=exported.info.backend, tolerance=tolerance, domains=comparisons)
    write_json(json_path, report.to_dict())
    return ValidationOutcome(report=report, json_path=json_path)
