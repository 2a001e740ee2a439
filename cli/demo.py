"""`gkd demo`: the whole path that exists today, on the built-in data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gkd_deploy.cli.console import console, next_step, track
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli.tables import miou_table
from gkd_deploy.demo import DemoSettings, run_demo


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data and run (rewritten on every run).")] = Path("demo-out"),
    train: Annotated[int, typer.Option(help="Synthetic source training images.")] = DemoSettings.train,
    target: Annotated[int, typer.Option(help="Images per shifted target domain.")] = DemoSettings.target,
    distill_steps: Annotated[int, typer.Option(help="Steps of each distillation stage.")] = DemoSettings.distill_steps,
    task_steps: Annotated[int, typer.Option(help="Steps of the task stage.")] = DemoSettings.task_steps,
) -> None:
    """Synthetic domains -> GKD stages 1-3 with a tiny teacher and student -> mIoU on unseen domains."""
    display = TrainingDisplay()
    try:
        result = run_demo(out, DemoSettings(train=train, target=target, distill_steps=distill_steps,
                                            task_steps=task_steps), track=track, callbacks=display)
    finally:
        display.close()
    console.print(f"data:  {result.data.cityscapes.parent} (clip: {result.data.video})")
    console.print(f"run:   {result.run.path}")
    console.print(miou_table(result.evaluation.report))
    console.print("[yellow]Teacher and student start from random weights (nothing is downloaded in the demo), "
                  "so the scores show the path working, not what GKD reaches with DINOv2 and DeiT weights.[/]")
    console.print(f"report: {result.evaluation.json_path}")
    next_step(f"gkd eval {result.run.path} --per-class",
              f"gkd train --resume {result.run.path}   # continues an interrupted run")
