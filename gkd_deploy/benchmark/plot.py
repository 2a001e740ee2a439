"""The latency-accuracy plot: p50 latency (x) against mIoU (y), one labelled point per measured row.

Drawn with OpenCV, which the project already depends on, so a plot needs no plotting library.
The x axis is logarithmic when latencies span more than a factor of 20 (a CPU and a TensorRT row
in one plot), linear otherwise. The image is `WIDTH` x `HEIGHT` pixels, a white background, one
colour per backend with a legend.

Without a single row that has an mIoU there is nothing to plot: `write_latency_accuracy_plot`
raises a ConfigError that says to pass a data set, rather than writing an empty picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from gkd_deploy.benchmark.report import BenchmarkRow
from gkd_deploy.errors import ConfigError
from gkd_deploy.fileio import atomic_path

WIDTH, HEIGHT = 1000, 700
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 50, 70  # margins; the legend sits in the right one
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, GREY, LIGHT = (0, 0, 0), (110, 110, 110), (225, 225, 225)
BACKEND_COLOURS = {  # BGR
    "torch": (180, 119, 31),
    "torch-compile": (189, 103, 148),
    "onnxruntime": (14, 127, 255),
    "onnxruntime-cuda": (40, 39, 214),
    "tensorrt": (44, 160, 44),
}
OTHER_COLOUR = (127, 127, 127)


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= raw)


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    log: bool = False

    @classmethod
    def around(cls, values: Sequence[float], log_above_ratio: float | None = None) -> "Axis":
        low, high = min(values), max(values)
        if log_above_ratio is not None and low > 0 and high / low > log_above_ratio:
            return cls(low / 1.3, high * 1.3, log=True)
        padding = (high - low) * 0.08 or max(abs(high) * 0.1, 1.0)
        return cls(low - padding, high + padding)

    def _scaled(self, value: float) -> float:
        return math.log10(value) if self.log else value

    def fraction(self, value: float) -> float:
        low, high = self._scaled(self.low), self._scaled(self.high)
        return (self._scaled(value) - low) / (high - low)

    def ticks(self) -> list[float]:
        if self.log:
            decades = range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1)
            steps = (1, 2, 5) if len(decades) <= 4 else (1,)
            values = [step * 10.0 ** decade for decade in decades for step in steps]
        else:
            step = _nice_step(self.high - self.low)
            values = [index * step for index in range(math.ceil(self.low / step), math.floor(self.high / step) + 1)]
        return [value for value in values if self.low <= value <= self.high]


def _tick_text(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.3g}"


def _x(axis: Axis, value: float) -> int:
    return int(round(LEFT + axis.fraction(value) * (WIDTH - LEFT - RIGHT)))


def _y(axis: Axis, value: float) -> int:
    return int(round(HEIGHT - BOTTOM - axis.fraction(value) * (HEIGHT - TOP - BOTTOM)))


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.42, colour=BLACK,
          thickness: int = 1) -> None:
    cv2.putText(canvas, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def _axes(canvas: np.ndarray, x_axis: Axis, y_axis: Axis) -> None:
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    for tick in x_axis.ticks():
        x = _x(x_axis, tick)
        cv2.line(canvas, (x, TOP), (x, bottom), LIGHT, 1)
        label = _tick_text(tick)
        width = cv2.getTextSize(label, FONT, 0.42, 1)[0][0]
        _text(canvas, label, (x - width // 2, bottom + 20), colour=GREY)
    for tick in y_axis.ticks():
        y = _y(y_axis, tick)
        cv2.line(canvas, (LEFT, y), (right, y), LIGHT, 1)
        label = _tick_text(tick)
        width = cv2.getTextSize(label, FONT, 0.42, 1)[0][0]
        _text(canvas, label, (LEFT - width - 8, y + 5), colour=GREY)
    cv2.rectangle(canvas, (LEFT, TOP), (right, bottom), BLACK, 1)
    x_title = "p50 latency (ms" + (", log scale)" if x_axis.log else ")")
    width = cv2.getTextSize(x_title, FONT, 0.5, 1)[0][0]
    _text(canvas, x_title, ((LEFT + right - width) // 2, HEIGHT - 22), scale=0.5)
    _text(canvas, "mIoU (%)", (8, TOP - 12), scale=0.5)


def _legend(canvas: np.ndarray, backends: list[str]) -> None:
    x = WIDTH - RIGHT + 16
    for index, backend in enumerate(backends):
        y = TOP + 14 + index * 22
        cv2.circle(canvas, (x, y - 4), 6, BACKEND_COLOURS.get(backend, OTHER_COLOUR), -1, cv2.LINE_AA)
        _text(canvas, backend, (x + 14, y))


def _overlaps(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    left, top, right, bottom = box
    return any(left < r and l < right and top < b and t < bottom for l, t, r, b in placed)


def _point(canvas: np.ndarray, row: BenchmarkRow, x_axis: Axis, y_axis: Axis,
           placed: list[tuple[int, int, int, int]]) -> None:
    """A dot and its label, put beside the dot where it covers no label drawn before (if it can)."""
    x, y = _x(x_axis, row.p50_ms), _y(y_axis, row.miou)
    cv2.circle(canvas, (x, y), 6, BACKEND_COLOURS.get(row.backend, OTHER_COLOUR), -1, cv2.LINE_AA)
    label = f"{row.model} {row.precision} b{row.batch} {row.size_text}"
    (width, height), _ = cv2.getTextSize(label, FONT, 0.38, 1)
    candidates = [(x + 9, y - 8), (x + 9, y + 8 + height), (x - 9 - width, y - 8), (x - 9 - width, y + 8 + height),
                  (x + 9, y - 10 - 2 * height), (x - 9 - width, y - 10 - 2 * height)]
    inside = [(left, base - height, left + width, base + 2) for left, base in candidates
              if left > LEFT and left + width < WIDTH - RIGHT and base - height > TOP and base < HEIGHT - BOTTOM]
    free = [box for box in inside if not _overlaps(box, placed)]
    fallback = (max(x - width // 2, 2), y - 10 - height, max(x - width // 2, 2) + width, y - 8)
    left, top, right, bottom = (free or inside or [fallback])[0]
    placed.append((left, top, right, bottom))
    _text(canvas, label, (left, bottom - 2), scale=0.38)


def render(rows: Sequence[BenchmarkRow], title: str) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8 BGR image of the rows that have a latency and an mIoU."""
    points = [row for row in rows if row.ok and row.p50_ms is not None and row.miou is not None]
    if not points:
        raise ConfigError("no benchmark row has an mIoU to plot: give a labelled data set (--data NAME=PATH,...) "
                          "so every model is scored")
    canvas = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    x_axis = Axis.around([row.p50_ms for row in points], log_above_ratio=20)
    y_axis = Axis.around([row.miou for row in points])
    _axes(canvas, x_axis, y_axis)
    _text(canvas, title, (LEFT, 28), scale=0.6)
    placed: list[tuple[int, int, int, int]] = []
    for row in points:
        _point(canvas, row, x_axis, y_axis, placed)
    _legend(canvas, list(dict.fromkeys(row.backend for row in points)))
    return canvas


def write_latency_accuracy_plot(rows: Sequence[BenchmarkRow], path: str | Path, title: str) -> Path:
    encoded, buffer = cv2.imencode(".png", render(rows, title))
    if not encoded:
        raise RuntimeError(f"OpenCV could not encode the plot for {path}")
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.tobytes())
    return Path(path)
