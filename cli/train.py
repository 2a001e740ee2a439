"""`gkd train`: GKD distillation and task learning into a run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gkd_deploy.cli.console import console, next_step, track
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli.tables import miou_table
from gkd_deploy.training.config import load_train_config
from gkd_deploy.training.trainer import launch, train as train_run


def collect_overrides(**options: Any) -> dict[str, Any]:
    """Command-line options that were given, as nested config keys (e.g. stage3.decoder)."""
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        *parents, leaf = key.split("__")
        target = overrides
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def train(
    teacher: Annotated[Optional[str], typer.Option(help="Teacher from `gkd models` (e.g. dinov2-b) or timm:<name>.")] = None,
    student: Annotated[Optional[str], typer.Option(help="Student from `gkd models` (e.g. vit-s) or timm:<name>.")] = None,
    proxy: Annotated[Optional[str], typer.Option(help="Stage 1 unlabeled images, NAME=PATH (e.g. images=/data/imagenet/train).")] = None,
    source: Annotated[Optional[str], typer.Option(help="Source domain, NAME=PATH (e.g. gtav=/data/gta).")] = None,
    targets: Annotated[Optional[str], typer.Option(help="Unseen domains scored at the end, NAME=PATH,... ")] = None,
    stages: Annotated[Optional[str], typer.Option(help="Stages to run, e.g. 1,2,3 or 2,3 (no proxy set).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML with the same settings; options given here override it.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder to create.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run folder from its last checkpoint.")] = None,
    devices: Annotated[int, typer.Option(help="Processes on this machine (DDP); or launch with torchrun.")] = 1,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Random initialisation, no weights download.")] = False,
    teacher_weights: Annotated[Optional[str], typer.Option(help="Local teacher weights (.safetensors/.pth), offline.")] = None,
    student_weights: Annotated[Optional[str], typer.Option(help="Local student weights (.safetensors/.pth), offline.")] = None,
    decoder: Annotated[Optional[str], typer.Option(help="Stage-3 decoder: mask2former (default), mask2former-edge, semfpn or linear.")] = None,
    label_fraction: Annotated[Optional[str], typer.Option(help="Share of source labels for stage 3: 1/16, 1/8, 1/4, 1/2, 1.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, data order, masks, augmentation.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data loader workers per process.")] = None,
) -> None:
    """Distil the teacher into the student (stages 1-2), train the decoder on the frozen student
    (stage 3), then score every target domain."""
    display = TrainingDisplay()
    try:
        if resume is not None:
            run_path, train_config = resume, None
        else:
            if out is None:
                raise typer.BadParameter("give the run folder to create with --out (or --resume RUN)", param_hint="--out")
            overrides = collect_overrides(
                teacher=teacher, student=student, proxy=proxy, source=source, targets=targets, stages=stages,
                pretrained=False if no_pretrained else None, teacher_weights=teacher_weights,
                student_weights=student_weights, stage3__decoder=decoder, stage3__label_fraction=label_fraction,
                seed=seed, device=device, workers=workers)
            train_config = load_train_config(str(config) if config else None, overrides)
            run_path = out
        if devices > 1:
            run = launch(train_config, run_path, devices, resume=resume is not None, make_callbacks=TrainingDisplay)
            evaluation = None
        else:
            result = train_run(train_config, run_path, resume=resume is not None, callbacks=display, track=track)
            run, evaluation = result.run, result.evaluation
    finally:
        display.close()
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    console.print(f"run folder: {run.path}")
    if evaluation is not None:
        console.print(miou_table(evaluation.report))
        console.print(f"report: {evaluation.json_path}")
    next_step(f"gkd eval {run.path} --per-class")
