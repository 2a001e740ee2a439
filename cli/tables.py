"""Rich tables shared by commands."""

from __future__ import annotations

from rich.table import Table

from gkd_deploy.cli.console import fmt
from gkd_deploy.evaluation.evaluator import EvalReport


def miou_table(report: EvalReport, per_class: bool = False) -> Table:
    """One row per domain (mIoU, pixel accuracy), optionally one column per class."""
    table = Table(title=f"mIoU (%) - {report.mode.mode} inference")
    table.add_column("domain")
    table.add_column("images", justify="right")
    table.add_column("mIoU", justify="right", style="bold")
    table.add_column("pixel acc", justify="right")
    names = report.class_names if per_class else ()
    for name in names:
        table.add_column(name, justify="right")
    for domain in report.domains:
        table.add_row(domain.domain, str(domain.num_images), fmt(domain.miou), fmt(domain.pixel_accuracy),
                      *(fmt(domain.iou[name], 1) for name in names))
    if len(report.domains) > 1:
        table.add_row("mean", "", fmt(report.mean_miou), "", *("" for _ in names), style="dim")
    return table
