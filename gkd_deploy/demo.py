"""The main path in miniature on the built-in synthetic domains; grows as the product grows.

Today: write the synthetic source and target domains (and a driving clip), run the three GKD
stages with a small teacher and student (random initial weights: no weights can be downloaded
here), and score the result on the source validation split and the four shifted targets. The
commands and files are the ones a user runs with real weights and data; only the sizes are small.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from gkd_deploy.data.synthetic import SyntheticSummary, write_synthetic
from gkd_deploy.errors import ConfigError
from gkd_deploy.evaluation.evaluator import Track, no_progress
from gkd_deploy.evaluation.runner import EvalOutcome
from gkd_deploy.run import RunDir
from gkd_deploy.training.config import DistillSettings, TaskSettings, TrainConfig
from gkd_deploy.training.loop import Callbacks
from gkd_deploy.training.trainer import train

log = logging.getLogger(__name__)

MARKER = ".gkd-demo"


@dataclass(frozen=True)
class DemoSettings:
    train: int = 48
    val: int = 16
    target: int = 16
    size: tuple[int, int] = (512, 256)
    distill_steps: int = 40
    task_steps: int = 150
    crop: int = 128
    seed: int = 0
    workers: int = 2


@dataclass(frozen=True)
class DemoResult:
    data: SyntheticSummary
    run: RunDir
    evaluation: EvalOutcome


def demo_config(data: SyntheticSummary, settings: DemoSettings) -> TrainConfig:
    """Tiny teacher and student, all three stages, sized for a few minutes on 2 CPU cores."""
    # The authors' patch sizes: stage 1 at patch 14 (112 px: 8 x 8 tokens), stage 2 at patch 16
    # (128 px: the same grid). A short warm-up, as this run is a few dozen steps at a high rate.
    stage1 = DistillSettings(steps=settings.distill_steps, batch_size=8, img_size=settings.crop // 16 * 14, patch_size=14,
                             base_lr=0.3, warmup_steps=4, ema=False)
    stage2 = DistillSettings(steps=settings.distill_steps, batch_size=8, img_size=settings.crop, patch_size=16,
                             base_lr=0.3, warmup_steps=4, ema=False)
    return TrainConfig(
        teacher="tiny-teacher", student="tiny-student", pretrained=False,
        proxy=f"images={data.cityscapes / 'leftImg8bit' / 'train'}", source=f"cityscapes={data.cityscapes}",
        targets=(f"cityscapes={data.cityscapes}", f"acdc={data.acdc}"), stages=(1, 2, 3),
        stage1=stage1, stage2=stage2,
        stage3=TaskSettings(steps=settings.task_steps, batch_size=8, crop_size=settings.crop,
                            short_side=min(settings.size), lr=2e-3, warmup_steps=10, decoder="semfpn",
                            decoder_options={"neck_channels": 64, "head_channels": 32, "groups": 8}),
        seed=settings.seed, workers=settings.workers, checkpoint_every=50, log_every=5,
    )


def _claim(out_dir: Path) -> None:
    """The demo rewrites its own folder on every run, and refuses to touch anyone else's."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise ConfigError(f"{out_dir} exists and was not written by `gkd demo`; choose an empty folder with --out")
        for child in ("data", "run", "infer", "benchmark"):
            shutil.rmtree(out_dir / child, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by gkd demo; rewritten on every run\n")


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), track: Track = no_progress,
             callbacks: Callbacks | None = None) -> DemoResult:
    out_dir = Path(out_dir)
    _claim(out_dir)
    data = write_synthetic(out_dir / "data", train=settings.train, val=settings.val, target=settings.target,
                           size=settings.size, seed=settings.seed, video=True, track=track)
    result = train(demo_config(data, settings), out_dir / "run", callbacks=callbacks, track=track)
    log.info("demo run folder %s", result.run.path)
    return DemoResult(data=data, run=result.run, evaluation=result.evaluation)
