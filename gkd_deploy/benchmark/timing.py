"""Latency of one call, repeated: warm-up, then timed runs until enough runs *and* enough time.

A fixed number of runs gives unstable tails for fast models (p99 of 20 runs is their maximum) and
wastes time on slow ones, so the loop stops only when both `min_runs` and `min_seconds` are
reached, capped at `max_runs`. Each run is timed on its own:

- `WallClock` (CPU, and GPU backends that return host tensors or synchronise themselves):
  `time.perf_counter` around the call, after an optional synchronisation, so queued GPU work is
  counted in the run that queued it;
- `CudaEventClock` (torch on CUDA, whose outputs stay on the device): CUDA events recorded on the
  current stream before and after the call, then waited on, so a run's latency is the time the
  GPU took from the first to the last of its kernels, launch gaps included.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol, Sequence

import numpy as np

from gkd_deploy.errors import ConfigError

Call = Callable[[], Any]


class Clock(Protocol):
    name: str

    def measure(self, call: Call) -> float:
        """Run `call` once; its latency in milliseconds."""
        ...


class WallClock:
    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.synchronize = synchronize
        self.name = "perf_counter" + (" + synchronize" if synchronize else "")

    def measure(self, call: Call) -> float:
        started = time.perf_counter()
        call()
        if self.synchronize is not None:
            self.synchronize()
        return (time.perf_counter() - started) * 1000


class CudaEventClock:
    name = "CUDA events"

    def measure(self, call: Call) -> float:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


@dataclass(frozen=True)
class LatencyStats:
    """Per-run latencies (ms) summarised; `first_run_ms` is the first call (torch.compile's
    compilation, CUDA context and allocator set-up), kept out of the percentiles."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    first_run_ms: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], first_run_ms: float) -> "LatencyStats":
        if not samples_ms:
            raise ValueError("no timed runs to summarise")
        values = np.asarray(samples_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])  # linear interpolation between order statistics
        return cls(runs=len(values), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                   mean_ms=float(values.mean()), first_run_ms=float(first_run_ms))

    def images_per_second(self, batch: int) -> float:
        return batch * 1000.0 / self.mean_ms


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int = 5
    min_runs: int = 30
    min_seconds: float = 2.0
    max_runs: int = 10_000

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more runs, got {self.warmup}")
        if self.min_runs < 1:
            raise ConfigError(f"min_runs must be at least 1, got {self.min_runs}")
        if self.min_seconds < 0:
            raise ConfigError(f"min_seconds must be 0 or more, got {self.min_seconds}")
        if self.max_runs < self.min_runs:
            raise ConfigError(f"max_runs ({self.max_runs}) must be at least min_runs ({self.min_runs})")


def warm_up(call: Call, clock: Clock, runs: int) -> float | None:
    """Run `call` `runs` times; the latency of the first, or None when `runs` is 0."""
    first = clock.measure(call) if runs > 0 else None
    for _ in range(runs - 1):
        call()
    return first


def timed_runs(call: Call, clock: Clock, policy: TimingPolicy) -> list[float]:
    """Per-run latencies (ms) until `min_runs` and `min_seconds` are both reached, or `max_runs`."""
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < policy.max_runs and (
            len(samples) < policy.min_runs or time.perf_counter() - started < policy.min_seconds):
        samples.append(clock.measure(call))
    return samples


def measure_latency(call: Call, clock: Clock, policy: TimingPolicy,
                    during_timed_runs: ContextManager | None = None) -> LatencyStats:
    """Warm up, then time; `during_timed_runs` (e.g. a power sampler) is entered around the timed
    runs only. Without warm-up, the first timed run is also reported as the first run."""
    first = warm_up(call, clock, policy.warmup)
    with during_timed_runs or contextlib.nullcontext():
        samples = timed_runs(call, clock, policy)
    return LatencyStats.from_samples(samples, samples[0] if first is None else first)
