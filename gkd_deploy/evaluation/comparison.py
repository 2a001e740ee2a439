"""What `gkd validate` reports: per domain, the reference's and the exported model's score and
their agreement; semantic (mIoU) here, instance (mask AP) in `evaluation.instances`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DomainComparison:
    domain: str
    num_images: int
    reference_miou: float
    exported_miou: float
    pixel_agreement: float

    @property
    def delta(self) -> float:
        return self.exported_miou - self.reference_miou


@dataclass(frozen=True)
class ValidationReport:
    model: str
    reference: str
    precision: str
    backend: str
    tolerance: float
    domains: tuple[DomainComparison, ...]

    @property
    def passed(self) -> bool:
        return all(abs(d.delta) <= self.tolerance for d in self.domains)

    def to_dict(self) -> dict:
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 4)

        return {
            "model": self.model, "reference": self.reference, "precision": self.precision, "backend": self.backend,
            "tolerance": self.tolerance, "passed": self.passed,
            "domains": [{"domain": d.domain, "num_images": d.num_images, "reference_miou": clean(d.reference_miou),
                         "exported_miou": clean(d.exported_miou), "delta": clean(d.delta),
                         "pixel_agreement": clean(d.pixel_agreement)} for d in self.domains],
        }


@dataclass(frozen=True)
class ValidationOutcome:
    report: ValidationReport
    json_path: Path
