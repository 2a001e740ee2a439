"""Learning-rate schedules as pure functions of the step (nothing to save or restore on resume)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, peak: float, minimum: float, warmup: int) -> float:
    """Linear warm-up from 0 to `peak` over `warmup` steps, then cosine down to `minimum` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (peak - minimum) * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_poly(step: int, total: int, peak: float, minimum: float, warmup: int, power: float) -> float:
    """Linear warm-up, then `(peak - minimum) * (1 - progress) ** power + minimum` (mmseg's poly)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return (peak - minimum) * (1 - min(1.0, progress)) ** power + minimum


def warmup_multistep(step: int, total: int, peak: float, warmup: int, milestones: tuple[float, ...] = (0.9, 0.95),
                     gamma: float = 0.1) -> float:
    """Linear warm-up, then `peak` x `gamma` for every milestone (a share of `total`) passed (detectron2's multi-step)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * gamma ** sum(step >= round(m * total) for m in milestones)
