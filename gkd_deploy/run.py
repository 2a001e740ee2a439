"""The run folder: everything needed to resume, evaluate or export a run, and no other state.
`RunDir` owns every name in it; no other module builds a path inside a run.

    RUN/config.yaml                          resolved configuration (`RunDir.config()`: typed)
    RUN/checkpoints/segmenter.safetensors    the latest complete segmenter (weights + config)
    RUN/checkpoints/stage<N>-student.safetensors, stage<N>-student-ema.safetensors, stage<N>-state.pt
    RUN/checkpoints/<teacher|student>-<phase>.safetensors, <phase>-state.pt, RUN/pseudo/<phase>.json
                                             an instance-distillation run's phases (`sskd`)
    RUN/metrics.json, RUN/train.log          training metrics, training log
    RUN/eval.json                            the training's evaluation (later ones: eval-2.json, ...)
    RUN/export/model-<precision>[-<W>x<H>][-<outputs>].onnx, .engine   exported models (`ExportDir`)

A checkpoint outside a run folder exports into `export/` beside it, with the same names. Reports
about one file lie beside it (`report_path`): model-int8.onnx.validate.json, model.safetensors.eval.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import yaml

from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.fileio import file_sha256

if TYPE_CHECKING:
    from gkd_deploy.sskd.config import InstanceTrainConfig
    from gkd_deploy.training.config import TrainConfig

SEGMENTER_CHECKPOINT = "checkpoints/segmenter.safetensors"
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")  # the order in which an export folder is searched
ENGINE_SUFFIXES = (".engine", ".plan")
FORMAT_SUFFIXES = {"onnx": ".onnx", "trt": ".engine"}
DEFAULT_OUTPUTS = "both"


@dataclass(frozen=True)
class ExportDir:
    """The files `gkd export` writes for one checkpoint.

    `trained_size`: the segmenter's training input (height, width); an export at that size is
    model-<precision>, at another size model-<precision>-<W>x<H>, so that one size never replaces
    another's files. Files returning only the labels (or only the scores) end in -labels (-scores).
    """

    path: Path

    def file(self, precision: str, format: str = "onnx", *, size: Sequence[int] | None = None,
             trained_size: Sequence[int] | None = None, outputs: str = DEFAULT_OUTPUTS) -> Path:
        if format not in FORMAT_SUFFIXES:
            raise ConfigError(f"unknown format {format!r}; choose from {', '.join(FORMAT_SUFFIXES)}")
        stem = f"model-{precision}"
        if size is not None and trained_size is not None and tuple(size) != tuple(trained_size):
            stem += f"-{size[1]}x{size[0]}"
        if outputs != DEFAULT_OUTPUTS:
            stem += f"-{outputs}"
        return self.path / (stem + FORMAT_SUFFIXES[format])

    def engine(self, precision: str) -> Path:
        """The engine at the training size: model-<precision>.engine, or a .plan of that name if only it is there."""
        default = self.file(precision, "trt")
        plans = [default.with_suffix(suffix) for suffix in ENGINE_SUFFIXES]
        return next((plan for plan in plans if plan.is_file()), default)

    def first_existing(self) -> Path | None:
        """The first export at the training size (ONNX before engines, fp32 first), else None."""
        candidates = [self.file(p) for p in EXPORT_PRECISIONS] + [self.engine(p) for p in EXPORT_PRECISIONS]
        return next((path for path in candidates if path.is_file()), None)

    @classmethod
    def containing(cls, file: str | Path) -> "ExportDir | None":
        folder = Path(file).parent
        return cls(folder) if folder.name == "export" else None


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def containing(cls, file: str | Path) -> "RunDir | None":
        """The run folder a file lies in (RUN/checkpoints/FILE or RUN/export/FILE, with RUN/config.yaml), else None."""
        folder = Path(file).parent
        if folder.name not in ("checkpoints", "export"):
            return None
        run = cls(folder.parent)
        return run if run.config_path.is_file() else None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def segmenter_checkpoint(self) -> Path:
        return self.path / SEGMENTER_CHECKPOINT

    def stage_result(self, stage: int) -> Path:
        """What a stage leaves: the student encoder (stages 1-2) or the segmenter (stage 3)."""
        return self.segmenter_checkpoint if stage == 3 else self.checkpoint_dir / f"stage{stage}-student.safetensors"

    def stage_ema(self, stage: int) -> Path:
        return self.checkpoint_dir / f"stage{stage}-student-ema.safetensors"

    def stage_state(self, stage: int) -> Path:
        """The resumable state of a stage in progress (weights, optimiser, schedule, random state)."""
        return self.checkpoint_dir / f"stage{stage}-state.pt"

    def phase_result(self, phase: str) -> Path:
        """What an instance-distillation phase leaves (`sskd`): teacher-finetune / teacher-selftrain /
        student-transfer / student-refine.safetensors; the final student is also the segmenter."""
        role = "teacher" if phase in ("finetune", "selftrain") else "student"
        return self.checkpoint_dir / f"{role}-{phase}.safetensors"

    def phase_state(self, phase: str) -> Path:
        return self.checkpoint_dir / f"{phase}-state.pt"

    def pseudo_labels(self, phase: str) -> Path:
        """The teacher's labels of the unlabelled pool that phase `phase` trains on."""
        return self.path / "pseudo" / f"{phase}.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def eval_path(self) -> Path:
        """The training's own report (the scores at the end of `gkd train`)."""
        return self.path / "eval.json"

    def new_eval_path(self) -> Path:
        """Where a later `gkd eval` of this run writes: eval.json while there is none, then
        eval-2.json, eval-3.json, ... (a report is never overwritten by another evaluation)."""
        path, number = self.eval_path, 1
        while path.exists():
            number += 1
            path = self.path / f"eval-{number}.json"
        return path

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def exports(self) -> ExportDir:
        return ExportDir(self.export_dir)

    def config(self, *, validate: bool = False) -> "TrainConfig | InstanceTrainConfig":
        """The stored configuration, typed (an instance run's as `InstanceTrainConfig`). `validate`:
        also check it as a training would (resume); without it a partial config (a run written by
        hand, or by an older version) reads with defaults."""
        from gkd_deploy.sskd.config import InstanceTrainConfig, is_instance_config
        from gkd_deploy.training.config import TrainConfig

        if not self.config_path.is_file():
            raise ConfigError(f"{self.path} holds no config.yaml: give a run folder (made by `gkd train`)")
        try:
            data = yaml.safe_load(self.config_path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{self.config_path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.config_path} must hold a mapping of settings")
        kind = InstanceTrainConfig if is_instance_config(data) else TrainConfig
        return kind.from_dict(data, validate=validate)


def resolve_checkpoint(path: str | Path) -> tuple[Path, RunDir | None]:
    """A run folder or a checkpoint file -> (checkpoint file, run folder or None)."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if not run.segmenter_checkpoint.is_file():
            raise ModelError(f"{path} holds no {SEGMENTER_CHECKPOINT}: give a run folder whose task stage has "
                             "finished, or a checkpoint file")
        return run.segmenter_checkpoint, run
    if not path.exists():
        raise ModelError(f"{path} not found: give a run folder or a .safetensors checkpoint")
    return path, RunDir.containing(path)


def export_dir_of(checkpoint: Path, run: RunDir | None) -> ExportDir:
    """Where a checkpoint's exports go: its run's export/, else export/ beside the file."""
    return run.exports if run is not None else ExportDir(checkpoint.parent / "export")


def run_of_export(file: str | Path) -> RunDir | None:
    """The run folder an exported file was written into (RUN/export/FILE), else None."""
    return RunDir.containing(file) if ExportDir.containing(file) is not None else None


def report_path(model: str | Path, kind: str, suffix: str = "json") -> Path:
    """Where a command reports on `model` by default: RUN/<kind>.<suffix> for a run folder,
    <file>.<kind>.<suffix> beside a file (model-int8.onnx.benchmark.png)."""
    model = Path(model)
    return model / f"{kind}.{suffix}" if model.is_dir() else model.with_name(f"{model.name}.{kind}.{suffix}")


def source_checkpoint_of(export: str | Path, source_checkpoint: str | None, source_sha256: str | None) -> Path:
    """The checkpoint an exported file came from: the one its metadata records (if it is still there,
    with the recorded hash), else the segmenter of the run folder it was written into."""
    export = Path(export)
    candidates = [Path(source_checkpoint)] if source_checkpoint else []
    run = run_of_export(export)
    if run is not None:
        candidates.append(run.segmenter_checkpoint)
    for candidate in candidates:
        if candidate.is_file() and (source_sha256 is None or file_sha256(candidate) == source_sha256):
            return candidate
    raise ConfigError(f"cannot find the checkpoint {export.name} was exported from; give it with "
                      "--reference RUN_OR_CHECKPOINT")
