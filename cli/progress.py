"""Rich display of a training run: one progress bar per stage with its loss terms, lr, speed, ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape

from gkd_deploy.cli.console import console

_SHOWN_FIRST = ("loss", "feature", "patch", "token", "ce")


class TrainingDisplay:
    """Implements the library's training callbacks (rank 0 only).

    On a terminal: one progress bar per stage, step / total and ETA first (they survive at 80
    columns), then the bar, the loss terms, lr and speed. Elsewhere (a log file, CI): one plain
    line per logged step with the same fields."""

    def __init__(self) -> None:
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]stage {task.fields[stage]}[/]"), MofNCompleteColumn(), TextColumn("eta"),
            TimeRemainingColumn(), BarColumn(bar_width=20), TextColumn("{task.fields[terms]}"), TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[int, Any] = {}
        self.totals: dict[int, int] = {}
        self.started = time.perf_counter()
        self.stage_clock: dict[int, tuple[float, int]] = {}

    def stage_described(self, stage: int, text: str) -> None:
        console.print(f"stage {stage}: {escape(text)}", soft_wrap=True)

    def stage_started(self, stage: int, title: str, total_steps: int, start_step: int) -> None:
        self.totals[stage] = total_steps
        self.stage_clock[stage] = (time.perf_counter(), start_step)
        if self.live:
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
        if self.live:
            self.progress.update(self.tasks[stage], completed=step, terms=" ".join(terms))
            return
        total = self.totals.get(stage, step)
        began, first = self.stage_clock.get(stage, (self.started, 0))
        rate = (step - first) / max(time.perf_counter() - began, 1e-9)
        eta = _clock((total - step) / rate) if rate > 0 else "-"
        console.print(f"stage {stage} step {step}/{total} eta {eta} " + " ".join(terms), soft_wrap=True,
                      highlight=False)

    def stage_finished(self, stage: int, summary: dict[str, Any]) -> None:
        if summary.get("skipped"):
            console.print(f"stage {stage}: already finished ({escape(str(summary['result']))}), skipped")
            return
        console.print(f"stage {stage}: wrote {escape(str(summary['result']))}")

    def elapsed(self) -> str:
        return _clock(time.perf_counter() - self.started)

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
