"""`gkd eval` as a library call: a run folder or checkpoint + target data sets -> report + JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gkd_deploy.data.registry import DatasetSpec
from gkd_deploy.errors import ConfigError, GKDError
from gkd_deploy.evaluation.evaluator import EvalReport, eval_domains, evaluate
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
    *,
    split: str = "val",
    mode: str = "slide",
    crop: int | None = None,
    stride: int | None = None,
    device: str = "auto",
    num_workers: int = 2,
    json_path: str | Path | None = None,
    track: Track = no_progress,
) -> EvalOutcome:
    """Evaluate a checkpoint (or a run folder's segmenter, or an exported .onnx / .engine file) on
    every domain of `targets`.

    Without `targets`, a run folder's configured targets are used. The JSON report goes to
    `json_path`, else the run's next free report (`eval.json`, then `eval-2.json`, ...: the
    training's own is never overwritten), else `<file>.eval.json` beside the file.
    """
    if Path(source).suffix.lower() in EXPORTED_SUFFIXES:
        return _evaluate_exported(Path(source), targets, split=split, mode=mode, crop=crop, stride=stride,
                                  device=device, num_workers=num_workers, json_path=json_path, track=track)
    checkpoint, run = resolve_checkpoint(source)
    targets = target_specs(targets, run)
    if checkpoint_format(checkpoint) == INSTANCE_FORMAT:
        from gkd_deploy.runtime.torch_backend import TorchInstancePredictor

        _whole_images_only(checkpoint, mode, crop, stride)
        json_path = json_path or (run.new_eval_path() if run is not None else report_path(checkpoint, "eval"))
        return _evaluate_instances(TorchInstancePredictor(checkpoint, device), checkpoint, targets, split, json_path,
                                   track)
    model = load_segmenter(checkpoint)
    # PyTorch takes any batch: the windows of an image run together (the result is the same).
    inference = default_inference_mode(model.config.img_size, model.config.patch_size, mode, crop, stride,
                                       window_batch=WINDOW_BATCH)
    domains = eval_domains(targets, split=split)
    report = evaluate(model, domains, class_set=model.class_set, mode=inference, device=device,
                      num_workers=num_workers, track=track, model_name=str(checkpoint))
    if json_path is None:
        json_path = run.new_eval_path() if run is not None else report_path(checkpoint, "eval")
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=checkpoint, json_path=Path(json_path))


EXPORTED_SUFFIXES = (".onnx", ".engine")


def _evaluate_exported(path: Path, targets, *, split: str, mode: str, crop: int | None, stride: int | None,
                       device: str, num_workers: int, json_path: str | Path | None, track: Track) -> EvalOutcome:
    """An exported file has a fixed input size, so it is scored with sliding windows of that size
    (as `gkd validate` scores it). Default targets: those of the run it was exported from, when
    that run is found."""
    from gkd_deploy.runtime.base import require_scores
    from gkd_deploy.runtime.loader import load_predictor

    if crop is not None or mode != "slide":
        raise ConfigError(f"{path.name} has a fixed input size: it is scored with sliding windows of that size "
                          "(leave out --crop and --mode)")
    predictor = load_predictor(path, device)
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
    if predictor.info.task == "instance":
        _whole_images_only(path, mode, crop, stride)
        return _evaluate_instances(predictor, path, targets, split, json_path or report_path(path, "eval"), track)
    inference = exported_inference_mode(predictor.info, stride)
    report = evaluate(predictor, eval_domains(targets, split=split), class_set=predictor.info.class_set,
                      mode=inference, device=device, num_workers=num_workers, track=track, model_name=str(path))
    json_path = Path(json_path) if json_path is not None else report_path(path, "eval")
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=path, json_path=json_path)


def _whole_images_only(model: Path, mode: str, crop: int | None, stride: int | None) -> None:
    if crop is not None or stride is not None or mode != "slide":
        raise ConfigError(f"{model.name} is an instance segmenter: it is scored on whole images at its input size; "
                          "leave out --mode, --crop and --stride")


def _evaluate_instances(predictor, model: Path, targets: list[DatasetSpec], split: str, json_path: str | Path,
                        track: Track) -> EvalOutcome:
    """Mask AP and AP50 per domain of an instance model (`evaluation.instances`)."""
    from gkd_deploy.evaluation.instances import evaluate_instances, instance_domains

    report = evaluate_instances(predictor, instance_domains(targets, split=split), track=track, model_name=str(model))
    write_json(json_path, report.to_dict())
    return EvalOutcome(report=report, checkpoint=model, json_path=Path(json_path))
