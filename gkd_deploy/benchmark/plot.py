"""The latency-accuracy plot: p50 latency (x) against mIoU (y), one labelled point per measured row.

Drawn with matplotlib (the `plots` extra; without it the plot is skipped, see `gkd_deploy.plotting`).
The x axis is logarithmic when latencies span more than a factor of 20 (a CPU and a TensorRT row
in one plot), linear otherwise. The image is `WIDTH` x `HEIGHT` pixels, one colour per backend
with a legend.

It takes plain `LatencyPoint`s, not benchmark rows: the report that writes the plot imports this
module, so this one does not import the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from gkd_deploy.plotting import draw_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH, HEIGHT = 1000, 700
LOG_ABOVE_RATIO = 20  # slowest / fastest latency above which the x axis is logarithmic
BACKEND_COLOURS = {
    "torch": "tab:blue",
    "torch-compile": "tab:purple",
    "onnxruntime": "tab:orange",
    "onnxruntime-cuda": "tab:red",
    "tensorrt": "tab:green",
}
OTHER_COLOUR = "tab:gray"
# Where a label may go, in points from its dot (x, y, horizontal alignment), in order of preference.
LABEL_PLACES = ((7, 5, "left"), (7, -13, "left"), (-7, 5, "right"), (-7, -13, "right"), (7, 17, "left"),
                (-7, 17, "right"))


@dataclass(frozen=True)
class LatencyPoint:
    latency_ms: float
    miou: float  # percent
    backend: str  # picks the colour
    label: str  # written beside the point


def write_latency_accuracy_plot(points: Sequence[LatencyPoint], path: str | Path, title: str) -> Path | None:
    """A PNG of `points` at `path`; None when matplotlib is missing (the plot is skipped)."""
    return draw_png(path, WIDTH, HEIGHT, lambda figure: _draw(figure, points, title))


def _draw(figure: "Figure", points: Sequence[LatencyPoint], title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    axes = figure.add_subplot()
    figure.subplots_adjust(left=0.08, right=0.78, top=0.92, bottom=0.1)
    for backend in dict.fromkeys(point.backend for point in points):
        mine = [point for point in points if point.backend == backend]
        axes.scatter([point.latency_ms for point in mine], [point.miou for point in mine], s=60, label=backend,
                     color=BACKEND_COLOURS.get(backend, OTHER_COLOUR), zorder=3)
    latencies = [point.latency_ms for point in points]
    logarithmic = min(latencies) > 0 and max(latencies) / min(latencies) > LOG_ABOVE_RATIO
    if logarithmic:
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.margins(0.08)
    _label(figure, axes, points)
    axes.grid(color="0.88", zorder=0)
    axes.set_xlabel("p50 latency (ms" + (", log scale)" if logarithmic else ")"))
    axes.set_ylabel("mIoU (%)")
    axes.set_title(title, loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _label(figure: "Figure", axes, points: Sequence[LatencyPoint]) -> None:
    """Write each label beside its dot, where it stays in the plot and covers no label written
    before (if it can): rows of one model and precision on several backends share an mIoU."""
    axes.get_xlim()  # settles the limits, so that the label boxes below are where they will be drawn
    renderer = figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    placed = []
    for point in points:
        text = axes.annotate(point.label, (point.latency_ms, point.miou), xytext=LABEL_PLACES[0][:2],
                             textcoords="offset points", fontsize=8)
        options = []
        for x, y, alignment in LABEL_PLACES:
            text.set_position((x, y))
            text.set_horizontalalignment(alignment)
            options.append(((x, y, alignment), text.get_window_extent(renderer)))
        inside = [(place, box) for place, box in options
                  if frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1]
        free = [(place, box) for place, box in inside if not any(box.overlaps(other) for other in placed)]
        (x, y, alignment), box = (free or inside or options)[0]
        text.set_position((x, y))
        text.set_horizontalalignment(alignment)
        placed.append(box)
