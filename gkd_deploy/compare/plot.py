"""The comparison as grouped bars: one group per target domain (and the average), one bar per
method, a whisker of +- one std over seeds. Drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from gkd_deploy.compare.report import AVERAGE, CompareReport
from gkd_deploy.fileio import atomic_path

WIDTH, HEIGHT = 1100, 600
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 50, 80
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, LIGHT = (0, 0, 0), (110, 110, 110), (225, 225, 225)
# Tableau-like colours (BGR), one per method in table order.
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def _text(canvas, text, origin, scale=0.42, colour=BLACK) -> None:
    cv2.putText(canvas, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def render(report: CompareReport, title: str) -> np.ndarray:
    canvas = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    groups = (*report.domains, AVERAGE)
    cells = {(m, g): report.cell(m, g) for m in report.methods for g in groups}
    tops = [c.mean + (0 if math.isnan(c.std) else c.std) for c in cells.values() if not math.isnan(c.mean)]
    high = max([10.0, *tops]) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: float) -> int:
        return int(TOP + plot_h * (1 - value / high))

    step = 10 ** math.floor(math.log10(high / 4))
    step = next(s * step for s in (1, 2, 5, 10) if high / (s * step) <= 8)
    tick = 0.0
    while tick <= high:
        cv2.line(canvas, (LEFT, y(tick)), (LEFT + plot_w, y(tick)), LIGHT, 1)
        _text(canvas, f"{tick:g}", (LEFT - 40, y(tick) + 4), colour=GREY)
        tick += step
    group_w = plot_w / len(groups)
    bar_w = max(2, int(group_w * 0.8 / max(1, len(report.methods))))
    for g, group in enumerate(groups):
        start = LEFT + g * group_w + group_w * 0.1
        for m, method in enumerate(report.methods):
            cell = cells[(method, group)]
            if math.isnan(cell.mean):
                continue
            x0 = int(start + m * bar_w)
            cv2.rectangle(canvas, (x0, y(cell.mean)), (x0 + bar_w - 1, y(0)), COLOURS[m % len(COLOURS)], -1)
            if not math.isnan(cell.std):
                centre = x0 + bar_w // 2
                cv2.line(canvas, (centre, y(cell.mean - cell.std)), (centre, y(cell.mean + cell.std)), BLACK, 1)
        _text(canvas, group, (int(LEFT + g * group_w + 4), HEIGHT - BOTTOM + 20))
    cv2.line(canvas, (LEFT, TOP), (LEFT, TOP + plot_h), BLACK, 1)
    cv2.line(canvas, (LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h), BLACK, 1)
    _text(canvas, "mIoU (%)", (10, TOP - 15))
    _text(canvas, title, (LEFT, 25), scale=0.55)
    for m, method in enumerate(report.methods):
        row = TOP + 10 + m * 22
        cv2.rectangle(canvas, (WIDTH - RIGHT + 15, row - 10), (WIDTH - RIGHT + 29, row + 2), COLOURS[m % len(COLOURS)], -1)
        _text(canvas, method, (WIDTH - RIGHT + 36, row))
    return canvas


def write_compare_plot(report: CompareReport, path: str | Path, title: str = "mIoU on the target domains") -> Path:
    path = Path(path)
    ok, data = cv2.imencode(".png", render(report, title))
    if not ok:
        raise OSError(f"could not encode {path}")
    with atomic_path(path) as temporary:
        temporary.write_bytes(data.tobytes())
    return path
