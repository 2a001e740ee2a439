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
from gkd_deploy.exporters.check import ParityReport, assert_parity, check_parity
from gkd_deploy.exporters.fp16 import convert_fp16, convert_int8_remainder
from gkd_deploy.exporters.onnx_export import MAX_OPSET, MIN_OPSET, export_onnx
from gkd_deploy.exporters.outputs import keep_outputs, output_bytes, output_names
from gkd_deploy.exporters.tensorrt import EngineOptions, build_engine, trtexec_command
from gkd_deploy.models.checkpoint import load_segmenter
from gkd_deploy.run import ExportDir, RunDir, export_dir_of, resolve_checkpoint
from gkd_deploy.runtime.tensorrt_backend import tensorrt_available

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
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


def _check(value: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    unknown = [v for v in value if v not in allowed]
    if unknown or not value:
        raise ConfigError(f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}")
    return tuple(v for v in allowed if v in value)


def synthetic_images(count: int, input_size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(count, 3, H, W) uint8 street scenes from the built-in generator (no data set needed)."""
    from gkd_deploy.data.synthetic import render_scene

    height, width = input_size
    return np.stack([render_scene(seed + i, (width, height), "clear")[0].transpose(2, 0, 1) for i in range(count)])


def export_model(
    source: str | Path,
    *,
    precisions: Sequence[str] = ("fp32",),
    formats: Sequence[str] = ("onnx",),
    input_size: tuple[int, int] | None = None,
    opset: int = 17,
    calib: Sequence[str] | str | None = None,
    calib_count: int = 512,
    calib_method: str = "minmax",
    target: str = "tensorrt",
    remainder: str | None = None,
    quantize_sensitive: bool = False,
    check_count: int = 8,
    out_dir: str | Path | None = None,
    engine: EngineOptions = EngineOptions(),
    outputs: str = "both",
) -> ExportOutcome:
    """`target`: the runtime the files are for. It decides where the int8 file's Q/DQ pairs go
    (tensorrt: TensorRT's fusion rules, as NVIDIA's ModelOpt places them; onnxruntime: where
    onnxruntime's CPU kernels are int8) and how deformable attention samples in every file. `remainder`: the
    precision of what is not int8 (fp16 or fp32; default fp16 for tensorrt, fp32 for onnxruntime).
    `outputs`: "both" (scores and labels), "scores" or "labels" (see `exporters.outputs`)."""
    # Every argument is checked before the first file is written.
    kept_outputs = output_names(outputs)
    precisions = _check(precisions, PRECISIONS, "precision")
    if target not in INT8_TARGETS:
        raise ConfigError(f"unknown int8 target {target!r}; use one of {', '.join(INT8_TARGETS)}")
    remainder = remainder or DEFAULT_REMAINDER[target]
    if remainder not in REMAINDERS:
        raise ConfigError(f"unknown int8 remainder precision {remainder!r}; use one of {', '.join(REMAINDERS)}")
    formats = _check(formats, FORMATS, "format")
    if "int8" in precisions and calib_method not in CALIB_METHODS:
        raise ConfigError(f"unknown calibration method {calib_method!r}; use one of {', '.join(CALIB_METHODS)}")
    if "int8" in precisions and calib_count < 1:
        raise ConfigError(f"calib_count must be at least 1, got {calib_count}")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset!r} is not supported; use {MIN_OPSET}..{MAX_OPSET}")
    if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
        raise ConfigError(f"input size must be (height, width) in pixels, got {input_size}")
    checkpoint, run = resolve_checkpoint(source)
    segmenter = load_segmenter(checkpoint).eval()
    size = input_size or (segmenter.config.img_size, segmenter.config.img_size)
    exports = ExportDir(Path(out_dir)) if out_dir else export_dir_of(checkpoint, run)
    specs = _data_specs(calib, run)
    check = (calibration_images(specs, check_count, size, seed=1, warn_small=False).images if specs
             else synthetic_images(check_count, size))
    files: list[ExportedFile] = []
    started = time.perf_counter()
    trained = (segmenter.config.img_size, segmenter.config.img_size)

    def path(precision: str, format: str = "onnx", file_outputs: str = "both") -> Path:
        return exports.file(precision, format, size=size, trained_size=trained, outputs=file_outputs)

    # Mask2Former's deformable attention: gathers where TensorRT runs the files, ONNX Runtime's faster
    # GridSample where it does (measured on vit-s + Mask2Former-edge at 512, CPU: 263 ms against 349 ms).
    sampling = "gather" if target == "tensorrt" else "grid_sample"
    fp32 = export_onnx(segmenter, path("fp32"), input_size=size, opset=opset, sampling=sampling,
                       source_checkpoint=checkpoint)
    files.append(_checked(fp32, "fp32", segmenter, check, started))
    onnx_files = {"fp32": fp32}
    calibration_count = 0
    if "fp16" in precisions:
        started = time.perf_counter()
        onnx_files["fp16"] = convert_fp16(fp32, path("fp16"))
        files.append(_checked(onnx_files["fp16"], "fp16", segmenter, check, started))
    if "int8" in precisions:
        if not specs:
            raise ConfigError("int8 needs calibration images: give --calib NAME=PATH (e.g. the source domain)")
        started = time.perf_counter()
        calibration = calibration_images(specs, calib_count, size)
        calibration_count = len(calibration)
        onnx_files["int8"] = quantize_int8(fp32, path("int8"), calibration, method=calib_method,
                                           target=target, quantize_sensitive=quantize_sensitive,
                                           cache_dir=exports.path / ".calib-cache")
        if remainder == "fp16":
            try:
                convert_int8_remainder(onnx_files["int8"], onnx_files["int8"])
            except ExportError:
                onnx_files["int8"].unlink(missing_ok=True)  # not the file that was asked for
                raise
        files.append(_checked(onnx_files["int8"], "int8", segmenter, check, started))
    if "onnx" not in formats or "fp32" not in precisions:
        # fp32 was only the base of the conversions: keep it (it is small and always valid), but do
        # not list it as a requested output.
        files = [f for f in files if f.precision in precisions]
    if kept_outputs != tuple(files[0].outputs):
        # After every conversion (they need the scores): each requested file returns what was asked
        # for, and is checked again as it now is.
        files = [_with_outputs(file, path(file.precision, file_outputs=outputs), kept_outputs, segmenter, check)
                 for file in files]
        onnx_files.update({file.precision: file.path for file in files})  # the engines are built from these
    num_classes = segmenter.class_set.num_classes
    files = [dataclasses.replace(file, output_bytes=output_bytes(file.outputs, num_classes, size)) for file in files]
    engine_commands: tuple[str, ...] = ()
    if "trt" in formats and not tensorrt_available():
        # The ONNX files are done and checked; the engines can be built where TensorRT is.
        engine_commands = tuple(trtexec_command(onnx_files[p], path(p, "trt", outputs), engine) for p in precisions)
    elif "trt" in formats:
        for precision in precisions:
            started = time.perf_counter()
            engine_path = build_engine(onnx_files[precision], path(precision, "trt", outputs), engine,
                                       check_images=check)
            files.append(ExportedFile(engine_path, precision, "trt", engine_path.stat().st_size,
                                      time.perf_counter() - started, None, kept_outputs,
                                      output_bytes(kept_outputs, num_classes, size)))
    return ExportOutcome(checkpoint=checkpoint, files=tuple(files), check_images=len(check),
                         calibration_images=calibration_count, engine_commands=engine_commands)


def _data_specs(calib: Sequence[str] | str | None, run: RunDir | None) -> list[str]:
    if calib:
        return [calib] if isinstance(calib, str) else list(calib)
    return list(run.config().source) if run is not None else []


def _with_outputs(file: ExportedFile, path: Path, names: tuple[str, ...], segmenter, images: np.ndarray) -> ExportedFile:
    """The file returning only `names`, written to `path` (the full file stays: the conversions and
    the benchmark's reference read it)."""
    started = time.perf_counter() - file.seconds
    keep_outputs(file.path, names, path)
    return dataclasses.replace(_checked(path, file.precision, segmenter, images, started), outputs=names)


def _checked(path: Path, precision: str, segmenter, images: np.ndarray, started: float) -> ExportedFile:
    """Parity against PyTorch; a file over tolerance is removed, so nothing bad looks written."""
    report = check_parity(path, segmenter, images)
    try:
        assert_parity(report, precision)
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    log.info("%s", report)
    return ExportedFile(path, precision, "onnx", path.stat().st_size, time.perf_counter() - started, report)
