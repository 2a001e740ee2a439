"""`gkd train`: GKD distillation and task learning (or SSKD's instance phases) into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from gkd_deploy.cli import options
from gkd_deploy.cli.console import console, next_step, track
from gkd_deploy.cli.options import collect_overrides
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli.tables import eval_table
from gkd_deploy.run import RunDir
from gkd_deploy.training.config import load_train_config
from gkd_deploy.training.recipes import apply_recipe


def train(
    teacher: options.Teacher = None,
    student: options.Student = None,
    proxy: options.Proxy = None,
    source: options.Source = None,
    targets: options.Targets = None,
    stages: Annotated[Optional[str], typer.Option(help="Stages to run, e.g. 1,2,3 or 2,3 (no proxy set).")] = None,
    config: options.Config = None,
    preset: options.Preset = None,
    recipe: Annotated[Optional[str], typer.Option(help="A baseline or ablation instead of GKD (see `gkd compare --help`), "
                                                       "e.g. one-stage-kd, cwd, gkd-unfrozen; with --task instance: "
                                                       "sskd (default), sskd-no-adaptation, sskd-no-refinement, "
                                                       "supervised.")] = None,
    task: Annotated[str, typer.Option(help="semantic (GKD) or instance (SSKD: semi-supervised distillation of an "
                                           "instance segmenter).")] = "semantic",
    method: Annotated[Optional[str], typer.Option(help="Distillation method of stages 1-2: qsd (GKD), mse, proteus, "
                                                       "fitnets, cwd, vitkd, afdcd, g2sd.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder to create.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run folder from its last checkpoint.")] = None,
    devices: Annotated[int, typer.Option(help="Processes on this machine (DDP); or launch with torchrun.")] = 1,
    no_pretrained: options.NoPretrained = False,
    teacher_weights: options.TeacherWeights = None,
    student_weights: options.StudentWeights = None,
    decoder: options.Decoder = None,
    label_fraction: Annotated[Optional[str], typer.Option(help="Share of source labels for stage 3: 1/16, 1/8, 1/4, 1/2, 1 "
                                                               "(--task instance: the labelled share, e.g. 0.1).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, data order, masks, augmentation.")] = None,
    device: options.Device = None,
    workers: options.Workers = None,
) -> None:
    """Distil the teacher into the student (stages 1-2), train the decoder on the frozen student
    (stage 3), then score every target domain. With --task instance: semi-supervised distillation
    of an instance segmenter (SSKD: teacher adaptation, knowledge transfer, student refinement),
    scored by mask AP."""
    from gkd_deploy.training.trainer import is_main_process, run_training

    display = TrainingDisplay()
    try:
        if resume is not None:
            run_path, train_config = resume, None
        else:
            if out is None:
                raise typer.BadParameter("give the run folder to create with --out (or --resume RUN)", param_hint="--out")
            common = dict(source=source, targets=targets, pretrained=False if no_pretrained else None, seed=seed,
                          device=device, workers=workers)
            if task == "instance":
                _refuse_for_instances(proxy=proxy, stages=stages, preset=preset, method=method)
                overrides = collect_overrides(
                    **common, teacher__encoder=teacher, student__encoder=student, teacher__weights=teacher_weights,
                    student__weights=student_weights, teacher__decoder=decoder, student__decoder=decoder,
                    label_fraction=label_fraction)
                from gkd_deploy.sskd.recipes import load_instance_recipe

                train_config = load_instance_recipe(str(config) if config else None, overrides, recipe or "sskd")
            elif task == "semantic":
                overrides = collect_overrides(
                    **common, teacher=teacher, student=student, proxy=proxy, stages=stages,
                    teacher_weights=teacher_weights, student_weights=student_weights, stage3__decoder=decoder,
                    stage3__label_fraction=label_fraction, stage1__method=method, stage2__method=method)
                if recipe is not None:
                    overrides["stages"] = [3]  # the recipe says which stages run
                train_config = load_train_config(str(config) if config else None, overrides, preset=preset)
                if recipe is not None:
                    train_config = apply_recipe(train_config, recipe)
            else:
                raise typer.BadParameter(f"unknown task {task!r}: semantic or instance", param_hint="--task")
            run_path = out
        try:
            result = run_training(train_config, run_path, devices=devices, resume=resume is not None,
                                  callbacks=display, make_callbacks=TrainingDisplay, track=track)
            run, evaluation = result.run, result.evaluation
        except KeyboardInterrupt:
            display.close()
            if is_main_process() and RunDir(Path(run_path)).config_path.is_file():
                console.print(f"[yellow]interrupted after {display.elapsed()}[/]; the last checkpoint is kept")
                next_step(f"gkd train --resume {run_path}   # continues where it stopped")
            raise typer.Exit(130) from None
    finally:
        display.close()
    if not is_main_process():
        return  # under torchrun, rank 0 reports
    console.print(f"run folder: {escape(str(run.path))} (trained in {display.elapsed()})")
    if evaluation is not None:
        console.print(eval_table(evaluation.report))
        console.print(f"report: {escape(str(evaluation.json_path))}")
    next_step(f"gkd eval {run.path} --per-class")


def _refuse_for_instances(**given: object) -> None:
    """Options of GKD's semantic stages that an instance run has no use for."""
    for name, value in given.items():
        if value is not None:
            raise typer.BadParameter(f"--{name} is a setting of GKD's semantic stages; an instance run's phases come "
                                     "from --recipe (sskd, sskd-no-adaptation, sskd-no-refinement, supervised)",
                                     param_hint=f"--{name}")

