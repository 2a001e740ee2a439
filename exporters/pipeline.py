"""`gkd export` as one library call: a run (or checkpoint) -> ONNX files per precision (and
TensorRT engines), each checked against PyTorch on real images before it counts as written.

    export_model("runs/exp1", precisions=("fp32", "fp16", "int8"))   # -> runs/exp1/export/model-*.onnx

The fp32 file is always written: fp16 and int8 are converted from it. Check images come from the
calibration domains (default: the run's source domain), or, for a bare checkpoint with no data
named, from the built-in synthetic scenes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from gkd_deploy.calib import METHODS as CALIB_METHODS, calibration_images, quantize_int8
from gkd_deploy.calib import DEFAULT_REMAINDER, REMAINDERS, TARGETS as INT8_TARGETS
from gkd_deploy.errors import ConfigError, ExportError
from gkd_deploy.exporters.check import PARITY_CHECKS, ParityReport, assert_parity
from gkd_deploy.exporters.fp16 import convert_fp16, convert_int8_remainder
from gkd_deploy.exporters.onnx_export import MAX_OPSET, MIN_OPSET, export_onnx
from gkd_deploy.exporters.outputs import instance_output_bytes, keep_outputs, output_bytes, output_names
from gkd_deploy.exporters.tensorrt import EngineOptions, build_engine, trtexec_command
from gkd_deploy.models.checkpoint import load_model
from gkd_deploy.precision import EXPORT_PRECISIONS, check_precisions
from gkd_deploy.size import Size
from gkd_deploy.run import ExportDir, RunDir, export_dir_of, resolve_checkpoint
from gkd_deploy.runtime.metadata import TASK_OUTPUTS
from gkd_deploy.runtime.tensorrt_backend import tensorrt_available

log = logging.getLogger(__name__)

FORMATS = ("onnx", "trt")


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    precision: str
    format: str
    size_bytes: int
    seconds: float
    parity: ParityReport | None
    outputs: tuple[str, ...] = ("scores", "labels")
    output_bytes: int = 0  # what the outputs hold for one image: what an application copies back


@dataclass(frozen=True)
class ExportOutcome:
    checkpoint: Path
    files: tuple[ExportedFile, ...]
    check_images: int
    calibration_images: int
    # With --format trt where TensorRT is not installed: one trtexec command per precision that
    # builds the engine on the target (the ONNX files carry the precision; TensorRT only builds).
    engine_commands: tuple[str, ...] = ()


def synthetic_images(count: int, input_size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(count, 3, H, W) uint8 street scenes from the built-in generator (no data set needed)."""
    from gkd_deploy.data.synthetic import render_scene

    height, width = input_size
    return np.stack([render_scene(seed + i, (width, height), "clear")[0].transpose(2, 0, 1) for i in range(count)])


@dataclass(frozen=True)
class ExportSettings:
    """What `gkd export` writes, every value checked when the settings are made (before any file).

    `target`: the runtime the files are for. It decides where the int8 file's Q/DQ pairs go
    (tensorrt: TensorRT's fusion rules, as NVIDIA's ModelOpt places them; onnxruntime: where
    onnxruntime's CPU kernels are int8) and how deformable attention samples in every file.
    `remainder`: the precision of what is not int8 (fp16 or fp32; None: fp16 for tensorrt, fp32 for
    onnxruntime). `outputs`: "both" (scores and labels), "scores" or "labels" (see `exporters.outputs`).
    `calib`: calibration (and check) data sets, NAME=PATH; empty: the run's source domain."""

    precisions: tuple[str, ...] = ("fp32",)
    formats: tuple[str, ...] = ("onnx",)
    input_size: tuple[int, int] | None = None
    opset: int = 17
    calib: tuple[str, ...] = ()
    calib_count: int = 512
    calib_method: str = "minmax"
    target: str = "tensorrt"
    remainder: str | None = None
    quantize_sensitive: bool = False
    check_count: int = 8
    engine: EngineOptions = EngineOptions()
    outputs: str = "both"

    def __post_init__(self) -> None:
        def setting(name: str, value) -> None:
            object.__setattr__(self, name, value)

        output_names(self.outputs)  # ConfigError for an unknown choice
        setting("precisions", check_precisions(_texts(self.precisions), EXPORT_PRECISIONS))
        setting("formats", _choices(_texts(self.formats), FORMATS, "format"))
        setting("calib", _texts(self.calib))
        if self.target not in INT8_TARGETS:
            raise ConfigError(f"unknown int8 target {self.target!r}; use one of {', '.join(INT8_TARGETS)}")
        setting("remainder", self.remainder or DEFAULT_REMAINDER[self.target])
        if self.remainder not in REMAINDERS:
            raise ConfigError(f"unknown int8 remainder precision {self.remainder!r}; use one of {', '.join(REMAINDERS)}")
        if "int8" in self.precisions and self.calib_method not in CALIB_METHODS:
            raise ConfigError(f"unknown calibration method {self.calib_method!r}; use one of {', '.join(CALIB_METHODS)}")
        if "int8" in self.precisions and self.calib_count < 1:
            raise ConfigError(f"calib_count must be at least 1, got {self.calib_count}")
        if self.check_count < 1:
            raise ConfigError(f"check_count must be at least 1, got {self.check_count}")
        if not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(f"opset {self.opset!r} is not supported; use {MIN_OPSET}..{MAX_OPSET}")
        if self.input_size is not None:
            setting("input_size", Size.of(self.input_size, "input size").hw)

    @property
    def output_names(self) -> tuple[str, ...]:
        return output_names(self.outputs)

    @property
    def sampling(self) -> str:
        """Mask2Former's deformable attention: gathers where TensorRT runs the files, ONNX Runtime's
        faster GridSample where it does (vit-s + Mask2Former-edge at 512, CPU: 263 ms against 349 ms)."""
        return "gather" if self.target == "tensorrt" else "grid_sample"


def _texts(value: Sequence[str] | str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _choices(value: tuple[str, ...], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    unknown = [v for v in value if v not in allowed]
    if unknown or not value:
        raise ConfigError(f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}")
    return tuple(v for v in allowed if v in value)


@dataclass(frozen=True)
class _Conversion:
    """What a converter needs besides the fp32 file: the settings, and the calibration images (int8)."""

    settings: ExportSettings
    calibration: object | None
    cache_dir: Path


def _to_fp16(fp32: Path, out: Path, job: _Conversion) -> Path:
    return convert_fp16(fp32, out)


def _to_int8(fp32: Path, out: Path, job: _Conversion) -> Path:
    settings = job.settings
    path = quantize_int8(fp32, out, job.calibration, method=settings.calib_method, target=settings.target,
                         quantize_sensitive=settings.quantize_sensitive, cache_dir=job.cache_dir)
    if settings.remainder == "fp16":
        try:
            convert_int8_remainder(path, path)
        except ExportError:
            path.unlink(missing_ok=True)  # not the file that was asked for
            raise
    return path


# How each exported precision is made from the fp32 file (the precision table's exported rows).
CONVERTERS = {"fp16": _to_fp16, "int8": _to_int8}


def export_model(source: str | Path, settings: ExportSettings | None = None, *, out_dir: str | Path | None = None,
                 **options) -> ExportOutcome:
    """Export `source` (a run folder or checkpoint) with `settings`, or with ExportSettings(**options)
    (e.g. `export_model(run, precisions=("fp32", "int8"), calib_count=64)`); into `out_dir`, default
    the run's export folder."""
    settings = settings if settings is not None else ExportSettings(**options)  # every argument checked here
    checkpoint, run = resolve_checkpoint(source)
    specs = list(settings.calib) or _data_specs(run)
    if "int8" in settings.precisions and not specs:
        raise ConfigError("int8 needs calibration images: give --calib NAME=PATH (e.g. the source domain)")
    segmenter = load_model(checkpoint).eval()
    if segmenter.task == "instance":
        _check_instance_settings(settings)
    trained = (segmenter.config.img_size, segmenter.config.img_size)
    size = settings.input_size or trained
    exports = ExportDir(Path(out_dir)) if out_dir else export_dir_of(checkpoint, run)
    check = (calibration_images(specs, settings.check_count, size, seed=1, warn_small=False).images if specs
             else synthetic_images(settings.check_count, size))

    def path(precision: str, format: str = "onnx", outputs: str = "both") -> Path:
        return exports.file(precision, format, size=size, trained_size=trained, outputs=outputs)

    started = time.perf_counter()
    fp32 = export_onnx(segmenter, path("fp32"), input_size=size, opset=settings.opset, sampling=settings.sampling,
                       source_checkpoint=checkpoint)
    kept_outputs = settings.output_names if segmenter.task == "semantic" else TASK_OUTPUTS[segmenter.task]
    files = [_checked(fp32, "fp32", segmenter, check, started)]
    onnx_files = {"fp32": fp32}
    calibration = calibration_images(specs, settings.calib_count, size) if "int8" in settings.precisions else None
    job = _Conversion(settings, calibration, exports.path / ".calib-cache")
    for precision in settings.precisions:
        if precision in CONVERTERS:
            started = time.perf_counter()
            onnx_files[precision] = CONVERTERS[precision](fp32, path(precision), job)
            files.append(_checked(onnx_files[precision], precision, segmenter, check, started))
    if "onnx" not in settings.formats or "fp32" not in settings.precisions:
        # fp32 was only the base of the conversions: keep it (it is small and always valid), but do
        # not list it as a requested output.
        files = [f for f in files if f.precision in settings.precisions]
    if kept_outputs != tuple(files[0].outputs):
        # After every conversion (they need the scores): each requested file returns what was asked
        # for, and is checked again as it now is.
        files = [_with_outputs(file, path(file.precision, outputs=settings.outputs), kept_outputs, segmenter, check)
                 for file in files]
        onnx_files.update({file.precision: file.path for file in files})  # the engines are built from these
    files = [dataclasses.replace(file, output_bytes=_output_bytes(segmenter, file.outputs, size)) for file in files]
    engine_commands: tuple[str, ...] = ()
    if "trt" in settings.formats and not tensorrt_available():
        # The ONNX files are done and checked; the engines can be built where TensorRT is.
        engine_commands = tuple(trtexec_command(onnx_files[p], path(p, "trt", settings.outputs), settings.engine)
                                for p in settings.precisions)
    elif "trt" in settings.formats:
        for precision in settings.precisions:
            started = time.perf_counter()
            engine_path = build_engine(onnx_files[precision], path(precision, "trt", settings.outputs),
                                       settings.engine, check_images=check)
            files.append(ExportedFile(engine_path, precision, "trt", engine_path.stat().st_size,
                                      time.perf_counter() - started, None, kept_outputs,
                                      _output_bytes(segmenter, kept_outputs, size)))
    return ExportOutcome(checkpoint=checkpoint, files=tuple(files), check_images=len(check),
                         calibration_images=len(calibration) if calibration is not None else 0,
                         engine_commands=engine_commands)


def _check_instance_settings(settings: ExportSettings) -> None:
    """What an instance model's export does not take: --outputs (its files always return all three)."""
    if settings.outputs != "both":
        raise ConfigError("an instance segmenter's file always returns masks, classes and scores; leave out --outputs")


def _output_bytes(segmenter, outputs: tuple[str, ...], size: tuple[int, int]) -> int:
    if segmenter.task == "instance":
        return instance_output_bytes(segmenter.config.top_k, size)
    return output_bytes(outputs, segmenter.class_set.num_classes, size)


def _data_specs(run: RunDir | None) -> list[str]:
    """Default calibration and check data: the run's source domain (none for a bare checkpoint)."""
    return list(run.config().source) if run is not None else []


def _with_outputs(file: ExportedFile, path: Path, names: tuple[str, ...], segmenter, images: np.ndarray) -> ExportedFile:
    """The file returning only `names`, written to `path` (the full file stays: the conversions and
    the benchmark's reference read it)."""
    started = time.perf_counter() - file.seconds
    keep_outputs(file.path, names, path)
    return dataclasses.replace(_checked(path, file.precision, segmenter, images, started), outputs=names)


def _checked(path: Path, precision: str, segmenter, images: np.ndarray, started: float) -> ExportedFile:
    """Parity against PyTorch; a file over tolerance is removed, so nothing bad looks written."""
    report = PARITY_CHECKS[segmenter.task](path, segmenter, images)
    try:
        assert_parity(report, precision)
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    log.info("%s", report)
    return ExportedFile(path, precision, "onnx", path.stat().st_size, time.perf_counter() - started, report,
                        TASK_OUTPUTS[segmenter.task])
