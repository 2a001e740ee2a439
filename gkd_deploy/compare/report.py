"""The comparison table: methods x target domains (+ their average), mean +- std over seeds.

Each run contributes one `RunScore` (its mIoU per domain, as `gkd eval` wrote it). A cell is the
mean and sample standard deviation of a method's per-seed scores on a domain; the average column
is the mean and std of the per-seed averages over the domains (so the std says how much a whole
run varies, not how much the domains differ). With a `teacher` row, each method's average is also
given as a share of the teacher's.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gkd_deploy.fileio import atomic_path, write_json

AVERAGE = "average"


@dataclass(frozen=True)
class RunScore:
    method: str
    seed: int
    run: str
    domains: dict[str, float]  # domain -> mIoU (percent)

    @property
    def average(self) -> float:
        values = [v for v in self.domains.values() if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float  # sample std over seeds; NaN with one seed
    count: int

    def text(self, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.count < 2 or math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _cell(values: Sequence[float]) -> Cell:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return Cell(math.nan, math.nan, 0)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return Cell(statistics.fmean(values), std, len(values))


@dataclass(frozen=True)
class CompareReport:
    """Scores of every (method, seed) run; `methods` and `domains` in table order."""

    methods: tuple[str, ...]
    domains: tuple[str, ...]
    scores: tuple[RunScore, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def runs(self, method: str) -> list[RunScore]:
        return [score for score in self.scores if score.method == method]

    def cell(self, method: str, domain: str) -> Cell:
        if domain == AVERAGE:
            return _cell([score.average for score in self.runs(method)])
        return _cell([score.domains.get(domain, math.nan) for score in self.runs(method)])

    def share_of_teacher(self, method: str) -> float:
        """The method's mean average over the teacher reference's (NaN without a teacher row)."""
        if "teacher" not in self.methods:
            return math.nan
        teacher = self.cell("teacher", AVERAGE).mean
        return self.cell(method, AVERAGE).mean / teacher if teacher and not math.isnan(teacher) else math.nan

    def best(self, domain: str = AVERAGE, exclude: Sequence[str] = ("teacher",)) -> str | None:
        """The method with the highest mean on `domain`, rows in `exclude` left out."""
        candidates = [(self.cell(m, domain).mean, m) for m in self.methods if m not in exclude]
        candidates = [(value, m) for value, m in candidates if not math.isnan(value)]
        return max(candidates)[1] if candidates else None

    def to_dict(self) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 4)

        rows = []
        for method in self.methods:
            row: dict[str, Any] = {"method": method, "seeds": [s.seed for s in self.runs(method)]}
            for domain in (*self.domains, AVERAGE):
                cell = self.cell(method, domain)
                row[domain] = {"mean": clean(cell.mean), "std": clean(cell.std), "count": cell.count}
            row["share_of_teacher"] = clean(self.share_of_teacher(method))
            rows.append(row)
        return {
            "settings": self.settings,
            "methods": list(self.methods),
            "domains": list(self.domains),
            "table": rows,
            "runs": [{"method": s.method, "seed": s.seed, "run": s.run,
                      "domains": {k: clean(v) for k, v in s.domains.items()}, "average": clean(s.average)}
                     for s in self.scores],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    def write_csv(self, path: str | Path) -> Path:
        """One row per method: mean and std per domain and for the average, and the teacher share."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = (*self.domains, AVERAGE)
        writer.writerow(["method", "seeds", *(f"{c}_{k}" for c in columns for k in ("mean", "std")), "share_of_teacher"])
        for method in self.methods:
            values = []
            for column in columns:
                cell = self.cell(method, column)
                values += [_csv_number(cell.mean), _csv_number(cell.std)]
            writer.writerow([method, len(self.runs(method)), *values, _csv_number(self.share_of_teacher(method))])
        with atomic_path(path) as temporary:
            temporary.write_text(buffer.getvalue())
        return Path(path)


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"
