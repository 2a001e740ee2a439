"""`gkd eval` as a library call: a run folder or checkpoint + target data sets -> report + JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gkd_deploy.data.registry import DatasetSpec
from gkd_deploy.errors import ConfigError, GKDError
from gkd_deploy.evaluation.evaluator import EvalReport, eval_domains, evaluate
from gkd_deploy.evaluation.settings import EvalSettings
from gkd_deploy.evaluation.targets import target_specs
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.evaluation.inference import default_inference_mode, exported_inference_mode
from gkd_deploy.fileio import write_json
from gkd_deploy.models.checkpoint import INSTANCE_FORMAT, checkpoint_format, load_segmenter
from gkd_deploy.run import report_path, resolve_checkpoint, source_checkpoint_of

WINDOW_BATCH = 8


@dataclass(frozen=True)
class EvalOutcome:
    report: EvalReport  # an `evaluation.instances.InstanceEvalReport` for an instance model
    checkpoint: Path
    json_path: Path


def evaluate_model(
    source: str | Path,
    targets: Sequence[DatasetSpec | str] | str | None = None,
    settings: EvalSettings = EvalSettings(),
    track: Track = no_progress,
) -> EvalOutcome:
    """Evaluate a checkpoint (or a run folder's segmenter, or an exported .onnx / .engine file) on
    every domain of `targets`.

    Without `targets`, a run folder's configured targets are used. The JSON report goes to
    `settings.json_path`, else the run's next free report (`eval.json`, then `eval-2.json`, ...:
    the training's own is never overwritten), else `<file>.eval.json` beside the file.
    """
    if Path(source).suffix.lower() in EXPORTED_SUFFIXES:
        return _evaluate_exported(Path(source), targets, settings, track)
    checkpoint, run = resolve_checkpoint(source)
    targets = target_specs(targets, run)
    json_path = settings.json_path
    if json_path is None:
        json_path = run.new_eval_path() if run is not None else report_path(checkpoint, "eval")
    if checkpoint_format(checkpoint) == INSTANCE_FORMAT:
        from gkd_deploy.runtime.torch_backend import TorchInstancePredictor

        settings.check_whole_images(checkpoint)
        return _evaluate_instances(TorchInstancePredictor(checkpoint, settings.device), checkpoint, targets,
                                   settings.split, json_path, track)
    model = load_segmenter(checkpoint)
    # PyTorch takes any batch: the windows of an image run together (the result is the same).
    inference = default_inference_mode(model.config.img_size, model.config.patch_size, settings.mode, settings.crop,
                                       settings.stride, window_batch=WINDOW_BATCH)
    domains = eval_domains(targets, split=settings.split)
    report = evaluate(model, domains, class_set=model.class_set, mode=inference, device=settings.device,
                      num_workers=settings.workers, track=track, model_name=str(checkpoint))
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=checkpoint, json_path=Path(json_path))


EXPORTED_SUFFIXES = (".onnx", ".engine")


def _evaluate_exported(path: Path, targets, settings: EvalSettings, track: Track) -> EvalOutcome:
    """An exported file has a fixed input size, so it is scored with sliding windows of that size
    (as `gkd validate` scores it). Default targets: those of the run it was exported from, when
    that run is found."""
    from gkd_deploy.runtime.base import require_scores
    from gkd_deploy.runtime.loader import load_predictor

    settings.check_fixed_input(path)
    predictor = load_predictor(path, settings.device)
    if predictor.info.input_size is None:
        raise ConfigError(f"{path} carries no input size; export it with `gkd export`")
    if predictor.info.task == "semantic":
        require_scores(predictor.info, "evaluation (scores averaged over sliding windows)")
    run = None
    if not targets:
        metadata = getattr(predictor, "metadata", None)
        try:
            run = resolve_checkpoint(source_checkpoint_of(path, getattr(metadata, "source_checkpoint", None),
                                                    getattr(metadata, "source_sha256", None)))[1]
        except GKDError:
            run = None
    targets = target_specs(targets, run)
    json_path = settings.json_path or report_path(path, "eval")
    if predictor.info.task == "instance":
        settings.check_whole_images(path)
        return _evaluate_instances(predictor, path, targets, settings.split, json_path, track)
    inference = exported_inference_mode(predictor.info, settings.stride)
    report = evaluate(predictor, eval_domains(targets, split=settings.split), class_set=predictor.info.class_set,
                      mode=inference, device=settings.device, num_workers=settings.workers, track=track,
                      model_name=str(path))
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=path, json_path=Path(json_path))


def _evaluate_instances(predictor, model: Path, targets: list[DatasetSpec], split: str, json_path: str | Path,
                        track: Track) -> EvalOutcome:
    """Mask AP and AP50 per domain of an instance model (`evaluation.instances`)."""
    from gkd_deploy.evaluation.instances import evaluate_instances, instance_domains

    report = evaluate_instances(predictor, instance_domains(targets, split=split), track=track, model_name=str(model))
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=model, json_path=Path(json_path))
