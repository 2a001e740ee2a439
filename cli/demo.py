"""`gkd demo`: the main path in miniature on the built-in data, the steps a user runs one by one:
train (GKD stages 1-3, then mIoU on the unseen targets), export FP32/FP16/INT8, validate each
exported file against PyTorch on the four shifted targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gkd_deploy.cli.console import console, next_step, track
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli.tables import miou_table
from gkd_deploy.cli.validate import validation_table
from gkd_deploy.demo import DemoSettings, run_demo
from gkd_deploy.evaluation.validation import validate_export
from gkd_deploy.exporters.pipeline import export_model


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data and run (rewritten on every run).")] = Path("demo-out"),
    train: Annotated[int, typer.Option(help="Synthetic source training images.")] = DemoSettings.train,
    target: Annotated[int, typer.Option(help="Images per shifted target domain.")] = DemoSettings.target,
    distill_steps: Annotated[int, typer.Option(help="Steps of each distillation stage.")] = DemoSettings.distill_steps,
    task_steps: Annotated[int, typer.Option(help="Steps of the task stage.")] = DemoSettings.task_steps,
) -> None:
    """Synthetic domains -> GKD stages 1-3 -> mIoU on unseen domains -> FP32/FP16/INT8 ONNX -> validation."""
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

    exported = export_model(result.run.path, precisions=("fp32", "fp16", "int8"))
    for file in exported.files:
        console.print(f"exported {file.path} ({file.size_bytes / 1e6:.2f} MB): {file.parity}")
    targets = f"acdc={result.data.acdc}"
    failed = []
    for file in exported.files:
        outcome = validate_export(file.path, targets, track=track)
        console.print(validation_table(outcome.report))
        if not outcome.report.passed:
            failed.append(file.path.name)
    if failed:
        console.print(f"[bold red]validation failed for {', '.join(failed)}[/]")
        raise typer.Exit(code=1)
    next_step(f"gkd eval {result.run.path} --per-class",
              f"gkd validate {exported.files[-1].path} --targets {targets}",
              f"gkd train --resume {result.run.path}   # continues an interrupted run")
