"""A benchmark's result: one row per (model, backend, precision, batch, input size), the system it
ran on and the settings, written as JSON, CSV and a latency-accuracy plot.

Every row has a status: `ok` (measured), `skipped` (could not run here; `reason` says why and how
to make it run) or `failed` (raised while loading or running; `reason` holds the error). Figures a
row does not have are None (empty in CSV, null in JSON). Units: ms, images/s, MB (10^6 bytes),
GFLOP per image, percent of the named peak, mIoU in percent (mean over the data set's domains;
none on an instance segmenter's rows, whose reason says so), board power in W and energy per image
in mJ (Jetson, with tegrastats). A measured row's `reason` is a note (a score missing or not
applying).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gkd_deploy.benchmark.plot import LatencyPoint, write_latency_accuracy_plot
from gkd_deploy.benchmark.system import SystemInfo
from gkd_deploy.errors import ConfigError
from gkd_deploy.fileio import atomic_path, write_json

STATUSES = ("ok", "skipped", "failed")
_TEXT_FIELDS = {"model", "backend", "precision", "status", "reason", "file"}
_INT_FIELDS = {"batch", "height", "width", "runs"}


@dataclass(frozen=True)
class BenchmarkRow:
    model: str
    backend: str
    precision: str
    batch: int
    height: int
    width: int
    status: str
    reason: str = ""
    file: str | None = None
    runs: int | None = None
    p50_ms: float | None = None
    compute_p50_ms: float | None = None  # ONNX Runtime: input and outputs resident on the device, no copies
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    first_run_ms: float | None = None
    images_per_s: float | None = None
    host_mb: float | None = None
    gpu_mb: float | None = None
    size_mb: float | None = None
    gflops: float | None = None
    peak_percent: float | None = None
    miou: float | None = None
    power_w: float | None = None
    energy_mj: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def size_text(self) -> str:
        """WIDTHxHEIGHT, as `--size` takes it."""
        return f"{self.width}x{self.height}"

    @property
    def label(self) -> str:
        return f"{self.model} {self.backend} {self.precision} b{self.batch} {self.size_text}"


FIELDS = tuple(field.name for field in dataclasses.fields(BenchmarkRow))


@dataclass(frozen=True)
class BenchmarkSettings:
    models: tuple[str, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    input_sizes: tuple[tuple[int, int], ...] | None  # (height, width); None: each model's own
    device: str
    warmup: int
    min_runs: int
    min_seconds: float
    max_runs: int
    data: str | None
    split: str
    peak_tflops: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkSettings":
        values = dict(data)
        for key in ("models", "backends", "precisions", "batch_sizes"):
            values[key] = tuple(values[key])
        if values.get("input_sizes") is not None:
            values["input_sizes"] = tuple(tuple(size) for size in values["input_sizes"])
        return cls(**values)


@dataclass(frozen=True)
class BenchmarkReport:
    rows: tuple[BenchmarkRow, ...]
    system: SystemInfo
    settings: BenchmarkSettings
    created: str

    @property
    def ok_rows(self) -> tuple[BenchmarkRow, ...]:
        return tuple(row for row in self.rows if row.ok)

    @property
    def not_run(self) -> tuple[BenchmarkRow, ...]:
        return tuple(row for row in self.rows if not row.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "settings": asdict(self.settings), "system": self.system.to_dict(),
                "rows": [asdict(row) for row in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkReport":
        return cls(rows=tuple(BenchmarkRow(**row) for row in data["rows"]),
                   system=SystemInfo.from_dict(data["system"]),
                   settings=BenchmarkSettings.from_dict(data["settings"]), created=data["created"])

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    def write_csv(self, path: str | Path) -> Path:
        """One line per row, the columns of `BenchmarkRow`; None is an empty cell."""
        with atomic_path(path) as temporary:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=FIELDS)
                writer.writeheader()
                for row in self.rows:
                    writer.writerow({key: "" if value is None else value for key, value in asdict(row).items()})
        return Path(path)

    def write_plot(self, path: str | Path) -> Path | None:
        """A PNG of p50 latency against mIoU, one point per measured row that has both (see plot.py).

        None when matplotlib is not installed: the plot is skipped with a warning that names the
        extra. ConfigError when no row has an mIoU (nothing to plot).
        """
        points = [LatencyPoint(row.p50_ms, row.miou, row.backend,
                               f"{row.model} {row.precision} b{row.batch} {row.size_text}")
                  for row in self.rows if row.ok and row.p50_ms is not None and row.miou is not None]
        if not points:
            raise ConfigError("no benchmark row has an mIoU to plot: give a labelled data set (--data NAME=PATH,...) "
                              "so every model is scored")
        device = self.system.gpu or self.system.cpu
        return write_latency_accuracy_plot(points, path, title=f"p50 latency vs mIoU - {device}")


def _cell(name: str, text: str) -> Any:
    if name in _TEXT_FIELDS:
        return text if text or name == "reason" else None
    if text == "":
        return None
    return int(text) if name in _INT_FIELDS else float(text)


def read_csv(path: str | Path) -> list[BenchmarkRow]:
    """The rows of a CSV file written by `BenchmarkReport.write_csv`."""
    with open(path, newline="") as handle:
        return [BenchmarkRow(**{name: _cell(name, text) for name, text in line.items()}) for line in csv.DictReader(handle)]


def read_json(path: str | Path) -> BenchmarkReport:
    return BenchmarkReport.from_dict(json.loads(Path(path).read_text()))
