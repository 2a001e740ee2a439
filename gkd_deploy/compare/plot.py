"""The comparison as grouped bars: one group per target domain (and the average), one bar per
method, a whisker of +- one std over seeds. Drawn with matplotlib (the `plots` extra; without it
the plot is skipped, see `gkd_deploy.plotting`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gkd_deploy.compare.report import AVERAGE, CompareReport
from gkd_deploy.plotting import draw_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH, HEIGHT = 1100, 600
GROUP_WIDTH = 0.8  # of the space between two groups, shared by the methods' bars


def write_compare_plot(report: CompareReport, path: str | Path,
                       title: str = "mIoU on the target domains") -> Path | None:
    """A PNG of the table at `path`; None when matplotlib is missing (the plot is skipped)."""
    return draw_png(path, WIDTH, HEIGHT, lambda figure: _draw(figure, report, title))


def _draw(figure: "Figure", report: CompareReport, title: str) -> None:
    axes = figure.add_subplot()
    figure.subplots_adjust(left=0.07, right=0.82, top=0.91, bottom=0.1)
    groups = (*report.domains, AVERAGE)
    bar_width = GROUP_WIDTH / max(1, len(report.methods))
    for index, method in enumerate(report.methods):
        cells = [report.cell(method, group) for group in groups]
        offset = (index - (len(report.methods) - 1) / 2) * bar_width
        # A NaN mean (no score) draws no bar; a NaN std (one seed) no whisker.
        axes.bar([position + offset for position in range(len(groups))], [cell.mean for cell in cells], bar_width,
                 yerr=[cell.std for cell in cells], capsize=2, label=method, zorder=3)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", color="0.88", zorder=0)
    axes.set_ylabel("mIoU (%)")
    axes.set_title(title, loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
