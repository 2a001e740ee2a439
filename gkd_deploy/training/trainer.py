"""`gkd train` as a library call: a config and a run folder in, distilled segmenter and scores out.

    train(config, "runs/exp1")              # a new run
    train(None, "runs/exp1", resume=True)   # continue where it stopped, with its own config

A stage whose result file exists is done and skipped on resume; a stage with a state file
continues from its last saved step with the same optimizer, EMA, schedule and data order.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from gkd_deploy.data.registry import parse_dataset_list
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.runner import EvalOutcome, evaluate_model
from gkd_deploy.evaluation.settings import EvalSettings
from gkd_deploy.fileio import atomic_path, write_json, write_yaml
from gkd_deploy.models.weights import check_weights_readable
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import RunDir
from gkd_deploy.training.config import TrainConfig
from gkd_deploy.training.distributed import Context, free_port, init_context, shutdown
from gkd_deploy.training.loop import CallbackGroup, Callbacks, NoCallbacks
from gkd_deploy.training.stages import StageResult, distill_stage, finished_before, handoff_path, task_stage

if TYPE_CHECKING:
    from gkd_deploy.sskd.config import InstanceTrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run: RunDir
    stages: tuple[StageResult, ...]
    evaluation: EvalOutcome | None


AnyConfig = Union[TrainConfig, "InstanceTrainConfig"]


def prepare_run(config: AnyConfig | None, run_path: str | Path, resume: bool) -> tuple[AnyConfig, RunDir]:
    """Check the run folder and settle the config: a new run writes it, a resumed run reads it."""
    run = RunDir(Path(run_path))
    if resume:
        return _stored_config(run.path), run
    if config is None:
        raise ConfigError("no training config given")
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"{run.path} is a file, not a folder: give --out a folder for the run")
    if run.config_path.exists():
        raise ConfigError(f"{run.path} already holds a run: continue it with --resume {run.path}, or choose another --out")
    for weights in config.weights_files():
        check_weights_readable(Path(weights))
    check_data_folders(config)
    config = config.with_absolute_paths()
    run.path.mkdir(parents=True, exist_ok=True)
    write_yaml(run.config_path, config.to_dict())
    return config, run


# The settings that name data folders, in either task's config.
DATA_SETTINGS = ("proxy", "source", "distill_extra", "targets")


def check_data_folders(config: AnyConfig) -> None:
    """DataError for a data set whose folder is not there, before the run folder is made (so the
    corrected command is not refused as a run that exists); their layouts are checked when read."""
    for setting in DATA_SETTINGS:
        entries = getattr(config, setting, ())
        if not entries:
            continue
        for spec in parse_dataset_list(entries if isinstance(entries, str) else list(entries)):
            path = Path(spec.path).expanduser()
            if not path.exists():
                raise DataError(f"{setting}: {spec.name}={spec.path} is not there (no such folder); fix the path")


def train(config: AnyConfig | None, run_path: str | Path, *, resume: bool = False,
          callbacks: Callbacks | None = None, track: Track = no_progress) -> TrainResult:
    """Run the configured stages in this process (one of several under torchrun)."""
    device = (config if config is not None else _stored_config(run_path)).device
    context = init_context(device)
    try:
        if context.is_main:
            config, run = prepare_run(config, run_path, resume)
        context.barrier()
        if not context.is_main:
            config, run = prepare_run(None, run_path, resume=True)
        return _train_stages(config, run, context, callbacks or NoCallbacks(), track)
    finally:
        shutdown(context)


def _stored_config(run_path: str | Path) -> AnyConfig:
    run = RunDir(Path(run_path))
    if not run.config_path.is_file():
        raise ConfigError(f"cannot resume {run.path}: no config.yaml there (is it a run folder?)")
    return run.config(validate=True)


def _train_stages(config: AnyConfig, run: RunDir, context: Context, callbacks: Callbacks,
                  track: Track) -> TrainResult:
    handler = _log_to_file(run) if context.is_main else None
    if context.is_main:
        callbacks = CallbackGroup(MetricsCSV(run.path / METRICS_CSV), callbacks)
    try:
        record = (lambda result: _record_stage(run, result)) if context.is_main else (lambda result: None)
        if isinstance(config, TrainConfig):
            results = _gkd_stages(config, run, context, callbacks, record)
        else:
            from gkd_deploy.sskd.phases import run_phases

            results = run_phases(config, run, context, callbacks, record, track)
        evaluation = None
        if context.is_main and run.segmenter_checkpoint.is_file() and config.targets:
            settings = EvalSettings(device=str(context.device), workers=min(config.workers, 2), json_path=run.eval_path)
            evaluation = evaluate_model(run.path, list(config.targets), settings, track=track)
        context.barrier()
        return TrainResult(run=run, stages=tuple(results), evaluation=evaluation)
    finally:
        if handler is not None:
            logging.getLogger("gkd_deploy").removeHandler(handler)
            handler.close()


def _gkd_stages(config: TrainConfig, run: RunDir, context: Context, callbacks: Callbacks,
                record: Callable[[StageResult], None]) -> list[StageResult]:
    """GKD's stages 1-3 (or a recipe's subset) not yet done."""
    results: list[StageResult] = []
    previous: Path | None = None
    for stage in config.stages:
        done = run.stage_result(stage)
        if not finished_before(done, f"stage {stage}", stage, context, callbacks):
            result = (task_stage(config, run, context, previous, callbacks) if stage == 3 else
                      distill_stage(stage, config, run, context, previous, callbacks))
            results.append(result)
            record(result)
            if context.is_main:
                callbacks.stage_finished(stage, {"result": str(result.path), **result.metrics})
        previous = handoff_path(run, stage, config.stage_settings(stage)) if stage != 3 else done
    return results


METRICS_CSV = "metrics.csv"
CSV_HEADER = ["stage", "step", "metric", "value"]


class MetricsCSV:
    """Every logged step's metrics in RUN/metrics.csv, one row per (stage, step, metric), so that
    losses, lr and speed can be plotted from any tool. A resumed stage first drops the rows past
    the step it resumes from (they are logged again), so the file has each step once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None:
        if not self.path.is_file():
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(CSV_HEADER)
            return
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        kept = [row for row in rows if not (int(row[0]) == stage and int(row[1]) > start_step)]
        if len(kept) != len(rows):
            with atomic_path(self.path) as temporary, Path(temporary).open("w", newline="") as handle:
                csv.writer(handle).writerows([CSV_HEADER, *kept])

    def step_finished(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerows([stage, step, name, f"{value:.6g}"] for name, value in metrics.items())

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None:
        pass


def _record_stage(run: RunDir, result: StageResult) -> None:
    path = run.metrics_path
    metrics: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    metrics[f"stage{result.stage}"] = {"steps": result.steps, "result": str(result.path.relative_to(run.path)),
                                       **{k: round(v, 6) for k, v in result.metrics.items()}}
    write_json(path, metrics)


def _log_to_file(run: RunDir) -> logging.Handler:
    handler = logging.FileHandler(run.log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    library_log = logging.getLogger("gkd_deploy")
    library_log.addHandler(handler)
    if library_log.getEffectiveLevel() > logging.INFO:
        library_log.setLevel(logging.INFO)
    return handler


def _spawned(local_rank: int, world_size: int, port: int, config: AnyConfig | None, run_path: str,
             resume: bool, make_callbacks: Callable[[], Callbacks] | None) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    callbacks = make_callbacks() if make_callbacks is not None and local_rank == 0 else None
    train(config, run_path, resume=resume, callbacks=callbacks)


def launch(config: AnyConfig | None, run_path: str | Path, devices: int, *, resume: bool = False,
           make_callbacks: Callable[[], Callbacks] | None = None) -> RunDir:
    """`gkd train --devices N`: N processes on this machine, as `torchrun --nproc-per-node N` would."""
    import torch.multiprocessing as mp

    if devices < 2:
        raise ConfigError(f"launch needs at least 2 devices, got {devices}; run train() directly for one")
    mp.start_processes(_spawned, args=(devices, free_port(), config, str(run_path), resume, make_callbacks),
                       nprocs=devices, start_method="spawn", join=True)
    return RunDir(Path(run_path))


def is_main_process() -> bool:
    """False in the processes of a torchrun launch other than rank 0 (they do not report)."""
    return os.environ.get("RANK", "0") == "0"


def run_training(config: AnyConfig | None, run_path: str | Path, *, devices: int = 1, resume: bool = False,
                 callbacks: Callbacks | None = None, make_callbacks: Callable[[], Callbacks] | None = None,
                 track: Track = no_progress) -> TrainResult:
    """`gkd train`: in this process (one device, or one rank of a torchrun launch), or in `devices`
    processes started here. The result of a multi-process run carries no evaluation and no stage
    results (the processes keep theirs in the run folder)."""
    if devices > 1:
        return TrainResult(run=launch(config, run_path, devices, resume=resume, make_callbacks=make_callbacks),
                           stages=(), evaluation=None)
    return train(config, run_path, resume=resume, callbacks=callbacks, track=track)
