"""Rich tables shared by commands."""

from __future__ import annotations

from rich.table import Table

from gkd_deploy.cli.console import fmt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gkd_deploy.evaluation.evaluator import EvalReport


def miou_table(report: EvalReport, per_class: bool = False) -> Table:
    """One row per domain (mIoU, pixel accuracy). With `per_class`, one row per class and one
    column per domain instead: 19 classes fit in rows at any width, 19 columns do not."""
    if per_class:
        return _per_class_table(report)
    table = Table(title=f"mIoU (%) - {report.mode.mode} inference")
    table.add_column("domain")
    table.add_column("images", justify="right")
    table.add_column("mIoU", justify="right", style="bold")
    table.add_column("pixel acc", justify="right")
    for domain in report.domains:
        table.add_row(domain.domain, str(domain.num_images), fmt(domain.miou), fmt(domain.pixel_accuracy))
    if len(report.domains) > 1:
        table.add_row("mean", "", fmt(report.mean_miou), "", style="dim")
    return table


def _per_class_table(report: EvalReport) -> Table:
    table = Table(title=f"IoU (%) per class - {report.mode.mode} inference")
    table.add_column("class", no_wrap=True)
    for domain in report.domains:
        table.add_column(domain.domain, justify="right")
    for name in report.class_names:
        table.add_row(name, *(fmt(domain.iou[name], 1) for domain in report.domains))
    table.add_section()
    table.add_row("mIoU", *(fmt(domain.miou) for domain in report.domains), style="bold")
    table.add_row("pixel acc", *(fmt(domain.pixel_accuracy) for domain in report.domains))
    table.add_row("images", *(str(domain.num_images) for domain in report.domains), style="dim")
    return table
