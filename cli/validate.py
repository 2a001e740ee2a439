"""`gkd validate`: exported model vs PyTorch, mIoU per unseen domain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from rich.markup import escape

from gkd_deploy.cli import options
from gkd_deploy.cli.console import console, fmt, next_step, track
from gkd_deploy.evaluation.settings import ValidateSettings  # torch-free: checked before torch loads
from gkd_deploy.training.config import default_workers

if TYPE_CHECKING:
    from gkd_deploy.evaluation.validation import ValidationReport


def validation_table(report: ValidationReport) -> Table:
    from gkd_deploy.evaluation.instances import InstanceValidationReport

    instance = isinstance(report, InstanceValidationReport)
    metric = "mask AP" if instance else "mIoU"
    table = Table(title=f"{Path(report.model).name} ({report.backend}, {report.precision}) vs PyTorch - "
                        f"tolerance {report.tolerance} {metric}")
    last = ("PyTorch AP50", "exported AP50") if instance else ("pixel agreement %",)
    for column in ("domain", "images", f"PyTorch {metric}", f"exported {metric}", "delta", *last):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for d in report.domains:
        ok = abs(d.delta) <= report.tolerance
        extra = (fmt(d.reference_ap50), fmt(d.exported_ap50)) if instance else (fmt(d.pixel_agreement, 3),)
        table.add_row(d.domain, str(d.num_images), fmt(d.reference_miou), fmt(d.exported_miou),
                      f"[{'green' if ok else 'red'}]{d.delta:+.2f}[/]", *extra)
    return table


def validate(
    model: Annotated[Path, typer.Argument(help="An exported .onnx file or TensorRT engine.")],
    targets: Annotated[Optional[str], typer.Option(help="Comma-separated NAME=PATH data sets to score on (default: the run's targets).")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="Run folder or checkpoint to compare with (default: the one the model was exported from).")] = None,
    tolerance: Annotated[Optional[float], typer.Option(help="Largest |delta| in mIoU points (default 0.1 for fp32/fp16, 1.0 for int8).")] = None,
    split: Annotated[str, typer.Option(help="Split to score: val or train.")] = "val",
    device: Annotated[str, typer.Option(help=options.DEVICE_HELP)] = "auto",
    workers: Annotated[Optional[int], typer.Option(help=options.WORKERS_HELP)] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Where to write the JSON report.")] = None,
) -> None:
    """Run PyTorch and the exported model over every target domain; fail when mIoU (instance models:
    mask AP) drifts."""
    # Made before the validation (and torch) is imported: a bad option is refused at once.
    settings = ValidateSettings(reference=reference, tolerance=tolerance, split=split, device=device,
                                workers=default_workers() if workers is None else workers, json_path=json_path)
    from gkd_deploy.evaluation.validation import validate_export

    outcome = validate_export(model, targets, settings, track=track)
    console.print(validation_table(outcome.report))
    console.print(f"report: {escape(str(outcome.json_path))}")
    if not outcome.report.passed:
        metric = "mask AP" if outcome.report.to_dict().get("task") == "instance" else "mIoU"
        console.print(f"[bold red]validation failed:[/] a domain's {metric} moved by more than {outcome.report.tolerance}")
        raise typer.Exit(code=1)
    console.print("[green]validation passed[/]")
    # Without --targets the run's own targets were used, and `gkd eval` finds them the same way.
    next_step(f"gkd eval {outcome.report.reference}" + (f" --targets {targets}" if targets else ""))
