"""Rich tables shared by commands."""

from __future__ import annotations

import math

from rich.table import Table

from gkd_deploy.cli.console import fmt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gkd_deploy.evaluation.evaluator import EvalReport


def eval_table(report, per_class: bool = False) -> Table:
    """The table of a `gkd eval` report: mask AP for an instance model, else mIoU."""
    from gkd_deploy.evaluation.instances import InstanceEvalReport

    if isinstance(report, InstanceEvalReport):
        return mask_ap_table(report, per_class)
    return miou_table(report, per_class)


def mask_ap_table(report, per_class: bool = False) -> Table:
    """One row per domain (mask AP, AP50); with `per_class`, one row per class and a column per domain."""
    size = f"{report.input_size[1]}x{report.input_size[0]} input" if report.input_size else "checkpoint input size"
    if per_class:
        table = Table(title=f"mask AP (%) per class - {size}")
        table.add_column("class", no_wrap=True)
        for domain in report.domains:
            table.add_column(domain.domain, justify="right")
        for name in report.class_names:
            table.add_row(name, *(fmt(domain.ap_per_class.get(name, math.nan), 1) for domain in report.domains))
        table.add_section()
        table.add_row("AP", *(fmt(domain.ap) for domain in report.domains), style="bold")
        return table
    rows = [(d.domain, d.num_images, d.ap, d.ap50) for d in report.domains]
    return _domain_table(f"mask AP (%) - whole images, {size}", ("AP", "AP50"), rows, report.mean_ap)


def _domain_table(title: str, metrics: tuple[str, str], rows: list[tuple[str, int, float, float]],
                  mean: float) -> Table:
    """One row per domain: its images, the main metric (bold) and a second one; a mean row for several."""
    table = Table(title=title)
    table.add_column("domain")
    table.add_column("images", justify="right")
    table.add_column(metrics[0], justify="right", style="bold")
    table.add_column(metrics[1], justify="right")
    for domain, images, main, second in rows:
        table.add_row(domain, str(images), fmt(main), fmt(second))
    if len(rows) > 1:
        table.add_row("mean", "", fmt(mean), "", style="dim")
    return table


def miou_table(report: EvalReport, per_class: bool = False) -> Table:
    """One row per domain (mIoU, pixel accuracy). With `per_class`, one row per class and one
    column per domain instead: 19 classes fit in rows at any width, 19 columns do not."""
    if per_class:
        return _per_class_table(report)
    rows = [(d.domain, d.num_images, d.miou, d.pixel_accuracy) for d in report.domains]
    return _domain_table(f"mIoU (%) - {report.mode.mode} inference", ("mIoU", "pixel acc"), rows, report.mean_miou)


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
