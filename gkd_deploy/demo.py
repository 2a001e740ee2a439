"""The main path in miniature on the built-in synthetic domains; grows as the product grows.

Write the synthetic source and target domains (a proxy set for stage 1 and a driving clip too),
distil a real pretrained teacher, EfficientNet-Lite0 with its ImageNet weights from pip (no
download), into a small ViT student with GKD (stages 1-3), and train the same student from scratch
on the source labels for comparison; score both on the source validation split and the four
shifted targets. Then deploy it: export FP32/FP16/INT8, validate each file against PyTorch on the
shifted targets, segment the driving clip, benchmark every backend and precision here. The
commands and files are the ones a user runs with DINOv2 and real data; only the sizes are small.

`run_demo` runs every step; `DemoHooks.step_done` receives each step's result as it finishes (the
CLI prints it then), and a failed validation stops the demo before the clip and the benchmark.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Any, Callable

from gkd_deploy.errors import ConfigError
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import RunDir
from gkd_deploy.training.config import DistillSettings, TaskSettings, TrainConfig
from gkd_deploy.training.recipes import apply_recipe

if TYPE_CHECKING:  # the demo trains: torch is imported when it runs, not when its settings are read
    from gkd_deploy.benchmark.report import BenchmarkReport
    from gkd_deploy.data.synthetic import SyntheticSummary
    from gkd_deploy.evaluation.runner import EvalOutcome
    from gkd_deploy.evaluation.validation import ValidationOutcome
    from gkd_deploy.exporters.pipeline import ExportOutcome
    from gkd_deploy.infer.runner import InferResult
    from gkd_deploy.training.loop import Callbacks

log = logging.getLogger(__name__)

MARKER = ".gkd-demo"
TEACHER = "effnet-lite0"
STUDENT = "tiny-student"


@dataclass(frozen=True)
class DemoSettings:
    train: int = 48
    val: int = 16
    target: int = 16
    proxy: int = 192
    size: tuple[int, int] = (512, 256)
    distill_steps: int = 60
    task_steps: int = 150
    crop: int = 128
    seed: int = 0
    workers: int = 0
    deploy: bool = True  # False: stop after training and scoring (no export, validation, clip, benchmark)

    def __post_init__(self) -> None:
        # Checked when the settings are made, before `run_demo` clears the previous demo's folder.
        for name in ("train", "val", "target", "proxy", "distill_steps", "task_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"demo setting {name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"demo setting workers must be >= 0, got {self.workers}")
        if self.crop < 32 or self.crop % 16:
            raise ConfigError(f"demo setting crop must be a multiple of 16 from 32, got {self.crop}")


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class DemoHooks:
    """How a caller follows the demo. `track` counts every long loop (the clip's frames included),
    `callbacks` follow the training. `step_done(step, result)` after each step: ("trained",
    DemoResult), ("exported", ExportOutcome), ("validated", ValidationOutcome) once per file,
    ("segmenting", InferStart) once the clip is open, before its first frame, ("segmented",
    InferResult), ("benchmarked", BenchmarkReport)."""

    track: Track = no_progress
    callbacks: Callbacks | None = None
    step_done: Callable[[str, Any], None] = _ignore


@dataclass(frozen=True)
class DemoResult:
    data: SyntheticSummary
    run: RunDir
    evaluation: EvalOutcome
    baseline: RunDir  # the same student trained from scratch on the source labels
    baseline_evaluation: EvalOutcome
    exported: ExportOutcome | None = None
    validations: tuple[ValidationOutcome, ...] = ()
    clip: InferResult | None = None
    clip_path: Path | None = None
    benchmark: BenchmarkReport | None = None
    benchmark_files: tuple[Path, ...] = ()

    @property
    def targets(self) -> str:
        """The shifted target domains, as `--targets` takes them."""
        return f"acdc={self.data.acdc}"

    @property
    def failed_validations(self) -> list[str]:
        return [Path(v.report.model).name for v in self.validations if not v.report.passed]

    def next_commands(self) -> list[str]:
        """What a user runs next, on this demo's own files."""
        commands = [f"gkd eval {self.run.path} --per-class"]
        if self.exported is not None:
            last = self.exported.files[-1].path
            commands += [f"gkd validate {last} --targets {self.targets}",
                         f"gkd infer {self.data.video} --model {last} --out clip-int8.mp4"]
        commands += [f"gkd benchmark --model {self.run.path} --precision fp32,int8 --data {self.targets}   "
                     "# + latency-vs-mIoU plot", f"gkd train --resume {self.run.path}   # continues an interrupted run"]
        return commands


def demo_config(data: SyntheticSummary, settings: DemoSettings) -> TrainConfig:
    """A real teacher into a tiny student, all three stages, sized for a few minutes on 2 CPU cores."""
    # The authors' patch sizes: stage 1 at patch 14 (112 px: 8 x 8 tokens), stage 2 at patch 16
    # (128 px: the same grid). The student starts from random weights, so its rate is higher than
    # the recipe's for a pretrained DeiT.
    stage1 = DistillSettings(steps=settings.distill_steps, batch_size=16, img_size=settings.crop // 16 * 14,
                             patch_size=14, base_lr=0.032, ema=False)
    stage2 = dataclasses.replace(stage1, img_size=settings.crop, patch_size=16)
    return TrainConfig(
        teacher=TEACHER, student=STUDENT, pretrained=True,
        proxy=f"images={data.proxy}", source=f"cityscapes={data.cityscapes}",
        targets=(f"cityscapes={data.cityscapes}", f"acdc={data.acdc}"), stages=(1, 2, 3),
        stage1=stage1, stage2=stage2,
        stage3=TaskSettings(steps=settings.task_steps, batch_size=8, crop_size=settings.crop,
                            short_side=min(settings.size), lr=2e-3, warmup_steps=10, decoder="semfpn",
                            decoder_options={"neck_channels": 64, "head_channels": 32, "groups": 8},
                            encoder_lr=2e-3),  # used by the from-scratch run; GKD's stage 3 is frozen
        seed=settings.seed, workers=settings.workers, checkpoint_every=50, log_every=5,
    )


def _claim(out_dir: Path) -> None:
    """The demo rewrites its own folder on every run, and refuses to touch anyone else's."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise ConfigError(f"{out_dir} exists and was not written by `gkd demo`; choose an empty folder with --out")
        for child in ("data", "run", "scratch", "infer", "benchmark"):
            shutil.rmtree(out_dir / child, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by gkd demo; rewritten on every run\n")


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), hooks: DemoHooks = DemoHooks()) -> DemoResult:
    out_dir = Path(out_dir)
    _claim(out_dir)
    result = _train_and_score(out_dir, settings, hooks)
    hooks.step_done("trained", result)
    return _deploy(result, out_dir, hooks) if settings.deploy else result


def _train_and_score(out_dir: Path, settings: DemoSettings, hooks: DemoHooks) -> DemoResult:
    from gkd_deploy.data.synthetic import write_synthetic
    from gkd_deploy.training.trainer import train

    track = hooks.track
    data = write_synthetic(out_dir / "data", train=settings.train, val=settings.val, target=settings.target,
                           size=settings.size, seed=settings.seed, video=True, track=track)
    # Proxy images are cropped to 112 px: rendered at half size they decode four times faster.
    proxy = write_synthetic(out_dir / "data", train=0, val=0, target=0, proxy=settings.proxy,
                            size=(settings.size[0] // 2, settings.size[1] // 2), seed=settings.seed, track=track)
    data = dataclasses.replace(data, proxy=proxy.proxy, proxy_images=proxy.proxy_images)
    config = demo_config(data, settings)
    gkd = train(apply_recipe(config, "gkd"), out_dir / "run", callbacks=hooks.callbacks, track=track)
    scratch = train(apply_recipe(config, "source-only"), out_dir / "scratch", callbacks=hooks.callbacks, track=track)
    log.info("demo run folders %s and %s", gkd.run.path, scratch.run.path)
    return DemoResult(data=data, run=gkd.run, evaluation=gkd.evaluation, baseline=scratch.run,
                      baseline_evaluation=scratch.evaluation)


def _deploy(result: DemoResult, out_dir: Path, hooks: DemoHooks) -> DemoResult:
    """Export, validate every file, segment the clip with the fp32 file, benchmark: as a user would."""
    from gkd_deploy.benchmark import run_benchmark
    from gkd_deploy.evaluation.validation import validate_export
    from gkd_deploy.exporters.pipeline import export_model
    from gkd_deploy.infer import InferSettings, infer
    from gkd_deploy.runtime.tensorrt_backend import tensorrt_available

    # int8 placed for the runtime the demo benchmarks: TensorRT where it is installed, else ONNX Runtime's CPU.
    exported = export_model(result.run.path, precisions=("fp32", "fp16", "int8"),
                            target="tensorrt" if tensorrt_available() else "onnxruntime")
    hooks.step_done("exported", exported)
    validations = []
    reference_cache: dict = {}  # PyTorch's labels, computed once for the three files
    for file in exported.files:
        validations.append(validate_export(file.path, result.targets, track=hooks.track,
                                           reference_cache=reference_cache))
        hooks.step_done("validated", validations[-1])
    result = dataclasses.replace(result, exported=exported, validations=tuple(validations))
    if result.failed_validations:
        return result
    clip_path = out_dir / "infer" / f"{result.data.video.stem}-seg.mp4"
    clip = infer(result.data.video, exported.files[0].path, InferSettings(out=clip_path, side_by_side=True, batch=4),
                 track=hooks.track, started=lambda start: hooks.step_done("segmenting", start))
    hooks.step_done("segmented", clip)
    report = run_benchmark([result.run.path], backends=("torch", "onnxruntime", "onnxruntime-cuda", "tensorrt"),
                           precisions=("fp32", "fp16", "int8"), warmup=3, min_runs=20, min_seconds=1.0,
                           track=hooks.track)
    bench_dir = out_dir / "benchmark"
    files = (report.write_json(bench_dir / "benchmark.json"), report.write_csv(bench_dir / "benchmark.csv"))
    result = dataclasses.replace(result, clip=clip, clip_path=clip_path, benchmark=report, benchmark_files=files)
    hooks.step_done("benchmarked", report)
    return result
