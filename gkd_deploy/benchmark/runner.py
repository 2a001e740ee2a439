"""`gkd benchmark` as one library call: models x backends x precisions x input sizes x batch sizes.

    report = run_benchmark(["runs/exp1"], backends=("torch", "onnxruntime"), precisions=("fp32", "int8"),
                           batch_sizes=(1, 8), data="acdc=/data/acdc")
    report.write_json("runs/exp1/benchmark.json")

For each combination: the model is loaded once per (model, backend, precision, input size) and
timed at every batch size (random float32 RGB 0..255 NCHW inputs, made once per combination and
placed where the backend reads them); peak host and GPU memory, the file's size, FLOPs per image
and, on a Jetson with tegrastats, board power are recorded with it. With `data`, the same loaded
model is scored once per (model, backend, precision, input size), at batch 1 with sliding windows
of the input size (as `gkd eval` / `gkd validate` score), and the mIoU (mean over the domains) is
put on its rows. A combination that cannot run here is a skipped row with the reason; one that
raises is a failed row with the error, and the benchmark goes on.

Instance segmenters are timed the same way (the call returns masks, classes and scores, the
post-processing included) and their FLOPs counted on their network; the mIoU does not apply to
them: with `data` their rows say so and point to `gkd eval` for their mask AP.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import logging
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from gkd_deploy.benchmark.backends import BACKENDS, Backend, Runner, missing_file_command, resolve_file
from gkd_deploy.benchmark.flops import flops_per_image, share_of_peak
from gkd_deploy.benchmark.jetson import JetsonInfo, TegrastatsSampler, detect_jetson
from gkd_deploy.benchmark.memory import MB, GpuPeakMemory, HostPeakMemory, device_used_bytes
from gkd_deploy.benchmark.report import BenchmarkReport, BenchmarkRow, BenchmarkSettings
from gkd_deploy.benchmark.sources import ModelSource, resolve_model
from gkd_deploy.benchmark.system import system_info
from gkd_deploy.benchmark.timing import TimingPolicy, measure_latency
from gkd_deploy.data import SPLITS
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.inference import default_inference_mode
from gkd_deploy.precision import PRECISIONS
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import report_path

log = logging.getLogger(__name__)

DEFAULT_BACKENDS = ("torch", "onnxruntime")
DEVICES = ("auto", "cpu", "cuda")
INPUT_SEED = 0


@dataclass(frozen=True)
class Combination:
    source: ModelSource
    backend: Backend
    precision: str
    input_size: tuple[int, int]  # (height, width)
    batch: int

    @property
    def group(self) -> tuple:
        """What one loaded model serves: every batch size of one (model, backend, precision, size)."""
        return self.source.path, self.backend.name, self.precision, self.input_size

    def row(self, status: str, reason: str = "", **figures) -> BenchmarkRow:
        height, width = self.input_size
        return BenchmarkRow(model=self.source.name, backend=self.backend.name, precision=self.precision,
                            batch=self.batch, height=height, width=width, status=status, reason=reason, **figures)


@dataclass
class LoadedModel:
    """The model of one group, loaded once for all its batch sizes (or the error loading it raised)."""

    combination: Combination
    file: Path
    runner: Runner | None = None
    gpu: GpuPeakMemory | None = None
    error: str = ""


def _names(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(value.strip().lower() for value in values)
    if not values:
        raise ConfigError(f"no {what} given; choose from {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            guesses = difflib.get_close_matches(value, allowed, n=2, cutoff=0.5)
            hint = f" did you mean {' or '.join(guesses)}?" if guesses else ""
            raise ConfigError(f"unknown {what} {value!r};{hint} choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _positive_ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    if not values or any(int(value) != value or value < 1 for value in values):
        raise ConfigError(f"{what} must be whole numbers of 1 or more, got {list(values)}")
    return tuple(int(value) for value in values)


def _input_sizes(input_sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    try:
        sizes = tuple((int(height), int(width)) for height, width in input_sizes)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or any(side < 1 for size in sizes for side in size):
        raise ConfigError(f"input sizes must be (height, width) pairs of 1 or more, got {list(input_sizes)}")
    return sizes


def _settings(models, backends, precisions, batch_sizes, input_sizes, device, policy: TimingPolicy, data, split,
              peak_tflops) -> BenchmarkSettings:
    if not models:
        raise ConfigError("no model to benchmark: give a run folder, checkpoint, .onnx file or engine (--model)")
    if device.split(":")[0] not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if peak_tflops is not None and peak_tflops <= 0:
        raise ConfigError(f"peak TFLOP/s must be positive, got {peak_tflops}")
    sizes = None if input_sizes is None else _input_sizes(input_sizes)
    return BenchmarkSettings(
        models=tuple(str(model) for model in models), backends=_names(backends, tuple(BACKENDS), "backend"),
        precisions=_names(precisions, tuple(PRECISIONS), "precision"),
        batch_sizes=_positive_ints(batch_sizes, "batch sizes"), input_sizes=sizes, device=device,
        warmup=policy.warmup, min_runs=policy.min_runs, min_seconds=policy.min_seconds, max_runs=policy.max_runs,
        data=data if data is None or isinstance(data, str) else ",".join(data), split=split, peak_tflops=peak_tflops)


def _sources(models: Sequence[str | Path]) -> list[ModelSource]:
    """Resolved models; two with the same short name are told apart by their full paths."""
    sources = [resolve_model(model) for model in models]
    names = [source.name for source in sources]
    return [source if names.count(source.name) == 1 else dataclasses.replace(source, name=str(source.path))
            for source in sources]


def plan(sources: Sequence[ModelSource], settings: BenchmarkSettings) -> list[Combination]:
    """Every combination, grouped so that one loaded model serves consecutive batch sizes. An
    exported file is benchmarked at its own precision only."""
    combinations = []
    for source in sources:
        precisions = settings.precisions if source.kind == "checkpoint" else (source.precision,)
        sizes = settings.input_sizes or (source.input_size,)
        for backend in settings.backends:
            for precision in precisions:
                for size in sizes:
                    combinations += [Combination(source, BACKENDS[backend], precision, size, batch)
                                     for batch in settings.batch_sizes]
    return combinations


def _domains(data: str, split: str, sources: Sequence[ModelSource]) -> dict | None:
    """The labelled domains the semantic models are scored on; None when every model is an instance
    segmenter (the mIoU does not apply to them)."""
    from gkd_deploy.evaluation.evaluator import check_class_sets, eval_domains  # data sets load through torch

    semantic = [source for source in sources if source.task == "semantic"]
    if not semantic:
        return None
    domains = eval_domains(data, split=split)
    for name, dataset in domains.items():
        if not getattr(dataset, "labeled", True):
            raise DataError(f"domain '{name}' has no labels; mIoU needs a labelled data set")
        for source in semantic:
            check_class_sets(source.class_set, dataset.class_set, name)
    return domains


def _no_miou(source: ModelSource, data: str) -> str:
    """The note on an instance segmenter's rows when the benchmark scores mIoU."""
    return f"mIoU does not apply to an instance segmenter; its mask AP: gkd eval {source.path} --targets {data}"


def _error_text(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


class _Benchmark:
    """The state one benchmark carries between combinations (memory probes, FLOP counts, data)."""

    def __init__(self, settings: BenchmarkSettings, policy: TimingPolicy, jetson: JetsonInfo | None,
                 domains: dict | None, num_workers: int) -> None:
        self.settings = settings
        self.policy = policy
        self.jetson = jetson
        self.domains = domains
        self.num_workers = num_workers
        self.host = HostPeakMemory()
        self.flops: dict[tuple, float | None] = {}
        self.files: dict[tuple, tuple[Path | None, str | None]] = {}

    def run(self, combinations: Sequence[Combination], track: Track) -> list[BenchmarkRow]:
        rows: list[BenchmarkRow] = []
        loaded: LoadedModel | None = None
        group_start = 0
        for combination in track(combinations, "benchmark", len(combinations)):
            file, reason = self._file(combination)
            if reason:
                rows.append(combination.row("skipped", reason))
                continue
            if loaded is None or loaded.combination.group != combination.group:
                self._finish(loaded, rows, group_start)
                loaded, group_start = self._load(combination, file), len(rows)
            rows.append(self._measure(combination, loaded))
        self._finish(loaded, rows, group_start)
        return rows

    def _file(self, combination: Combination) -> tuple[Path | None, str | None]:
        if combination.group not in self.files:
            self.files[combination.group] = resolve_file(combination.backend, combination.source,
                                                         combination.precision, combination.input_size,
                                                         self.settings.device)
        return self.files[combination.group]

    def _load(self, combination: Combination, file: Path) -> LoadedModel:
        loaded = LoadedModel(combination, file)
        try:
            baseline = (device_used_bytes() or 0) if combination.backend.may_use_gpu else 0
            loaded.runner = combination.backend.load(file, combination.precision, self.settings.device)
            loaded.gpu = GpuPeakMemory(loaded.runner.gpu_memory, baseline)
        except Exception as error:  # a backend failing to load is a result, not the end of the benchmark
            loaded.error = f"loading {file.name} failed: {_error_text(error)}"
            log.warning("%s %s: %s", combination.backend.name, combination.precision, loaded.error)
        return loaded

    def _flops(self, combination: Combination) -> float | None:
        key = (combination.source.path, combination.input_size)
        if combination.source.kind != "checkpoint" and "torch" not in sys.modules:
            return None  # FLOPs are counted by running the model in torch: exported files alone never load it
        if key not in self.flops:
            self.flops[key] = flops_per_image(combination.source.segmenter, combination.input_size)
        return self.flops[key]

    def _measure(self, combination: Combination, loaded: LoadedModel) -> BenchmarkRow:
        if loaded.runner is None:
            return combination.row("failed", loaded.error, file=str(loaded.file))
        runner, batch = loaded.runner, combination.batch
        generator = np.random.default_rng(INPUT_SEED)
        images = runner.prepare(generator.uniform(0, 255, (batch, 3, *combination.input_size)).astype(np.float32))
        sampler = TegrastatsSampler(self.jetson.tegrastats) if self.jetson and self.jetson.tegrastats else None
        self.host.reset()
        try:
            loaded.gpu.before_runs()
            stats = measure_latency(lambda: runner.predict(images), runner.clock, self.policy, sampler)
        except Exception as error:  # e.g. out of memory at a large batch: record it and go on
            log.warning("%s %s batch %d failed: %s", combination.backend.name, combination.precision, batch, error)
            return combination.row("failed", _error_text(error), file=str(loaded.file))
        host_mb, gpu_mb = self.host.peak_mb(), loaded.gpu.peak_mb()  # before counting FLOPs allocates a model
        compute = self._compute_p50(runner, images)
        images_per_s = stats.images_per_second(batch)
        flops = self._flops(combination)
        power = sampler.mean_power_w if sampler else None
        row = combination.row(
            "ok", file=str(loaded.file), runs=stats.runs, p50_ms=stats.p50_ms, compute_p50_ms=compute,
            p90_ms=stats.p90_ms,
            p99_ms=stats.p99_ms, mean_ms=stats.mean_ms, first_run_ms=stats.first_run_ms, images_per_s=images_per_s,
            host_mb=host_mb, gpu_mb=gpu_mb, size_mb=loaded.file.stat().st_size / MB,
            gflops=flops / 1e9 if flops is not None else None,
            peak_percent=share_of_peak(flops, images_per_s, self.settings.peak_tflops),
            power_w=power, energy_mj=power * 1000 / images_per_s if power is not None else None)
        log.info("%s: p50 %.2f ms, %.1f img/s", row.label, row.p50_ms, row.images_per_s)
        return row

    def _compute_p50(self, runner: Runner, images) -> float | None:
        """p50 with input and output resident on the device, where the backend can bind them there."""
        resident = getattr(runner.predictor, "resident", None)
        if resident is None:
            return None
        try:
            call = resident(images)
            return measure_latency(call, runner.clock, self.policy).p50_ms
        except Exception as error:  # the end-to-end figure stands
            log.warning("%s: no resident timing: %s", runner.file.name, error)
            return None

    def _finish(self, loaded: LoadedModel | None, rows: list[BenchmarkRow], start: int) -> None:
        """Score the group's model on the data (once, whatever the batch sizes), then release it."""
        if loaded is None or loaded.runner is None:
            return
        source = loaded.combination.source
        if self.settings.data and source.task == "instance":
            note = _no_miou(source, self.settings.data)
            rows[start:] = [dataclasses.replace(row, reason=row.reason or note) if row.ok else row
                            for row in rows[start:]]
        elif self.domains and any(row.ok for row in rows[start:]):
            miou, note = self._miou(loaded)
            rows[start:] = [dataclasses.replace(row, miou=miou, reason=row.reason or note) if row.ok else row
                            for row in rows[start:]]
        loaded.runner.release()
        loaded.runner = None
        gc.collect()
        torch = sys.modules.get("torch")  # loaded where a torch or TensorRT backend ran
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _miou(self, loaded: LoadedModel) -> tuple[float | None, str]:
        source, (height, width) = loaded.combination.source, loaded.combination.input_size
        mode = default_inference_mode(height, source.patch_size, crop_width=width)
        from gkd_deploy.evaluation.evaluator import evaluate

        runner = loaded.runner  # an exported file is scored through its predictor (scores), torch through predict
        try:
            report = evaluate(runner.predictor or runner.predict, self.domains, class_set=source.class_set, mode=mode,
                              num_workers=self.num_workers)
        except Exception as error:  # the timing stands; say why the score is missing
            return None, f"mIoU not measured: {_error_text(error)}"
        return (None, "mIoU is NaN (no class present)") if math.isnan(report.mean_miou) else (report.mean_miou, "")


def run_benchmark(
    models: Sequence[str | Path],
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1,),
    input_sizes: Sequence[tuple[int, int]] | None = None,
    device: str = "auto",
    warmup: int = 5,
    min_runs: int = 30,
    min_seconds: float = 2.0,
    max_runs: int = 10_000,
    data: str | Sequence[str] | None = None,
    split: str = "val",
    peak_tflops: float | None = None,
    num_workers: int = 0,
    track: Track = no_progress,
) -> BenchmarkReport:
    """Benchmark every combination of `models` (run folders, checkpoints, .onnx files, engines),
    `backends`, `precisions`, `input_sizes` ((height, width); None: each model's own) and
    `batch_sizes`. `data` ("NAME=PATH,...", as `gkd validate --targets`) adds the mIoU; `peak_tflops`
    the share of the device's peak reached; `device` ("auto", "cpu", "cuda") places the torch
    backends and allows or forbids the GPU ones. Raises ConfigError / ModelError / DataError for
    bad arguments before anything is timed."""
    if isinstance(models, (str, Path)):
        models = [models]
    policy = TimingPolicy(warmup=warmup, min_runs=min_runs, min_seconds=min_seconds, max_runs=max_runs)
    settings = _settings(models, backends, precisions, batch_sizes, input_sizes, device, policy, data, split,
                         peak_tflops)
    sources = _sources(models)
    domains = _domains(settings.data, split, sources) if settings.data else None
    jetson = detect_jetson()
    benchmark = _Benchmark(settings, policy, jetson, domains, num_workers)
    rows = benchmark.run(plan(sources, settings), track)
    return BenchmarkReport(rows=tuple(rows), system=system_info(benchmark.host.method, jetson), settings=settings,
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def default_report_paths(model: str | Path) -> dict[str, Path]:
    """Where `gkd benchmark` writes without --json/--csv/--plot: RUN/benchmark.{json,csv,png} for a
    run folder, <file>.benchmark.{json,csv,png} beside a checkpoint, .onnx file or engine."""
    return {kind: report_path(model, "benchmark", suffix) for kind, suffix in (("json", "json"), ("csv", "csv"),
                                                                                ("plot", "png"))}


EXPORTED_SUFFIXES = (".onnx", ".engine", ".plan")


def next_commands(report: BenchmarkReport) -> list[str]:
    """What to run after this benchmark: the export that writes the first missing file, then
    `gkd infer` with the fastest exported file (or, when nothing exported ran, the export or
    validation of the first model)."""
    resolved = _sources(report.settings.models)
    sources = {source.name: source for source in resolved}
    device = report.settings.device
    exports = [missing_file_command(BACKENDS[row.backend], sources[row.model], row.precision, device)
               for row in report.not_run if row.model in sources and row.backend in BACKENDS]
    commands = [command for command in dict.fromkeys(exports) if command][:1]
    exported = [row for row in report.ok_rows if row.file and Path(row.file).suffix in EXPORTED_SUFFIXES]
    if exported:
        fastest = min(exported, key=lambda row: row.p50_ms)
        commands.append(f"gkd infer VIDEO --model {fastest.file} --out out.mp4")
    elif not commands:
        first = report.settings.models[0]
        commands.append(f"gkd export {first} --precision fp32,fp16,int8" if Path(first).suffix in ("", ".safetensors")
                        else f"gkd validate {first} --targets NAME=PATH")
    return commands
