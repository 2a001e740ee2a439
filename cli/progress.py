"""Rich display of a training run: one progress bar per stage with its loss terms, lr, speed, ETA."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape

from gkd_deploy.cli.console import console

_SHOWN_FIRST = ("loss", "feature", "patch", "token", "ce")


class TrainingDisplay:
    """Implements the library's training callbacks (rank 0 only)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]stage {task.fields[stage]}[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[terms]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[int, Any] = {}

    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        self.tasks[stage] = self.progress.add_task(title, total=total_steps, completed=start_step, stage=stage,
                                                   terms="")
        if start_step:
            console.print(f"stage {stage}: resuming at step {start_step}")

    def step_finished(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        terms = [f"{name} {metrics[name]:.4f}" for name in _SHOWN_FIRST if name in metrics]
        terms.append(f"lr {metrics['lr']:.2e}")
        terms.append(f"{metrics['images_per_s']:.1f} img/s")
        self.progress.update(self.tasks[stage], completed=step, terms=" ".join(terms))

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None:
        if summary.get("skipped"):
            console.print(f"stage {stage}: already finished ({escape(str(summary['result']))}), skipped")
            return
        console.print(f"stage {stage}: wrote {escape(str(summary['result']))}")

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
