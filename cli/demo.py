"""`gkd demo`: the main path in miniature on the built-in data, the steps a user runs one by one:
train (GKD stages 1-3 from a real pretrained teacher, and the same student from scratch for
comparison; mIoU on the unseen targets), export FP32/FP16/INT8, validate each exported file
against PyTorch on the four shifted targets, segment the synthetic driving clip into an annotated
video, and benchmark the model on every backend and precision here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterable, TypeVar

import typer
from rich.table import Table
from rich.markup import escape

from gkd_deploy.cli.benchmark import benchmark_table
from gkd_deploy.cli.console import console, fmt, next_step, track
from gkd_deploy.cli.infer import print_start, print_summary, track_frames
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli.tables import miou_table
from gkd_deploy.cli.validate import validation_table
from gkd_deploy.demo import STUDENT as DEMO_STUDENT, TEACHER as DEMO_TEACHER, DemoHooks, DemoResult, DemoSettings, run_demo

if TYPE_CHECKING:
    from gkd_deploy.evaluation.evaluator import EvalReport

T = TypeVar("T")


def comparison_table(scratch: EvalReport, gkd: EvalReport) -> Table:
    """Per domain: the student trained from scratch on the source, the GKD student, the difference."""
    table = Table(title=f"The same student ({DEMO_STUDENT}), from scratch vs distilled from {DEMO_TEACHER} with GKD")
    for column in ("domain", "from scratch", "GKD", "difference"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    baseline = {d.domain: d.miou for d in scratch.domains}
    for domain in gkd.domains:
        before = baseline.get(domain.domain, float("nan"))
        table.add_row(domain.domain, fmt(before), fmt(domain.miou), f"{domain.miou - before:+.2f}")
    gkd_targets = [d.miou for d in gkd.domains if d.domain.startswith("acdc-")]
    scratch_targets = [baseline[d.domain] for d in gkd.domains if d.domain.startswith("acdc-") and d.domain in baseline]
    if gkd_targets and scratch_targets:
        before, after = sum(scratch_targets) / len(scratch_targets), sum(gkd_targets) / len(gkd_targets)
        table.add_row("targets (mean)", fmt(before), fmt(after), f"{after - before:+.2f}", style="bold")
    return table


class DemoPrinter:
    """Prints each step of the demo as it finishes (`DemoHooks.step_done`), and shows its loops
    (`DemoHooks.track`): the clip's frames with their rate, as `gkd infer` shows them."""

    def __init__(self) -> None:
        self.training = TrainingDisplay()
        self.clip_open = False

    def step_done(self, step: str, result) -> None:
        getattr(self, step)(result)

    def track(self, items: Iterable[T], description: str, total: int | None) -> Iterable[T]:
        # The library has one `track` for every loop; the clip's (between its "segmenting" and
        # "segmented" steps) counts frames, so it gets `gkd infer`'s bar with the frame rate.
        return (track_frames if self.clip_open else track)(items, description, total)

    def trained(self, result: DemoResult) -> None:
        self.training.close()
        console.print(f"data:  {escape(str(result.data.cityscapes.parent))} (clip: {escape(str(result.data.video))})")
        console.print(f"runs:  {escape(str(result.run.path))} (GKD), {escape(str(result.baseline.path))} (from scratch)")
        console.print(miou_table(result.evaluation.report))
        console.print(comparison_table(result.baseline_evaluation.report, result.evaluation.report))
        console.print("[yellow]The teacher is EfficientNet-Lite0 with real ImageNet weights (from pip, nothing is "
                      "downloaded); the student starts from random weights and trains for seconds, so these scores "
                      "show GKD at work in miniature, not what it reaches with DINOv2 and DeiT.[/]")

    def exported(self, outcome) -> None:
        for file in outcome.files:
            console.print(f"exported {escape(str(file.path))} ({file.size_bytes / 1e6:.2f} MB): {escape(str(file.parity))}")

    def validated(self, outcome) -> None:
        console.print(validation_table(outcome.report))

    def segmenting(self, start) -> None:
        print_start(start)
        self.clip_open = True

    def segmented(self, clip) -> None:
        self.clip_open = False
        print_summary(clip)

    def benchmarked(self, report) -> None:
        console.print(benchmark_table(report))

    def close(self) -> None:
        self.training.close()


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data and run (rewritten on every run).")] = Path("demo-out"),
    train: Annotated[int, typer.Option(help="Synthetic source training images.")] = DemoSettings.train,
    target: Annotated[int, typer.Option(help="Images per shifted target domain.")] = DemoSettings.target,
    proxy: Annotated[int, typer.Option(help="Proxy images for stage 1.")] = DemoSettings.proxy,
    distill_steps: Annotated[int, typer.Option(help="Steps of each distillation stage.")] = DemoSettings.distill_steps,
    task_steps: Annotated[int, typer.Option(help="Steps of the task stage.")] = DemoSettings.task_steps,
) -> None:
    """Synthetic domains -> GKD stages 1-3 -> mIoU on unseen domains -> FP32/FP16/INT8 ONNX -> validation
    -> annotated driving clip -> benchmark table."""
    settings = DemoSettings(train=train, target=target, proxy=proxy, distill_steps=distill_steps, task_steps=task_steps)
    printer = DemoPrinter()
    hooks = DemoHooks(track=printer.track, callbacks=printer.training, step_done=printer.step_done)
    try:
        result = run_demo(out, settings, hooks)
    finally:
        printer.close()
    if result.failed_validations:
        console.print(f"[bold red]validation failed for {', '.join(result.failed_validations)}[/]")
        raise typer.Exit(code=1)
    console.print(f"benchmark: {escape(', '.join(str(p) for p in result.benchmark_files))}")
    next_step(*result.next_commands())
