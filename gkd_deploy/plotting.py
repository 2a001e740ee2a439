"""PNG plots through matplotlib, an optional install (`pip install 'gkd-deploy[plots]'`).

A plot sits beside a CSV and a JSON file that hold the same figures, so it is optional: without
matplotlib, `draw_png` logs one warning that names the extra and writes nothing, and the command
that asked for the plot goes on. Figures are drawn on matplotlib's Agg canvas directly (no pyplot,
so no display, no global figure state) and written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gkd_deploy.fileio import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOTS_EXTRA = "pip install 'gkd-deploy[plots]'"
DPI = 100


def draw_png(path: str | Path, width: int, height: int, draw: Callable[["Figure"], None]) -> Path | None:
    """Call `draw` on a `width` x `height` pixel figure and write it to `path` as PNG.

    Returns `path`, or None when matplotlib is not installed (the plot is skipped, with a warning).
    """
    try:
        import matplotlib  # noqa: F401  (first, so that a blocked or missing package stops here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("plot %s skipped: it needs matplotlib (%s); the CSV and JSON hold the same figures",
                    path, PLOTS_EXTRA)
        return None
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    draw(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return Path(path)
