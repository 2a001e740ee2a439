"""TensorRT engines from the precision-typed ONNX files, through TensorRT's documented API.

Precision lives in the ONNX file (an fp16 graph, explicit int8 Q/DQ), so the network is built
strongly typed: the same path works on TensorRT 10 (where the INT8 calibrators are deprecated)
and TensorRT 11 (where they and the FP16/INT8 builder flags are gone). Engines are tied to the GPU
model and TensorRT version that built them: build on the target (on a Jetson, from the .onnx file).

A built engine counts only once it has been run: `build_engine` with check images runs it and
ONNX Runtime (the file it came from) on them, and deletes it with an ExportError when the two
disagree beyond the precision table's `engine_parity` (TensorRT has built wrong FP16 engines for ViT
segmenters); an instance file's engine is held to `engine_instance_parity`, its instances matched
by class and mask IoU as in the export check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gkd_deploy.errors import ConfigError, ExportError
from gkd_deploy.fileio import atomic_path
from gkd_deploy.precision import precision as get_precision
from gkd_deploy.runtime.metadata import read_onnx_metadata, sidecar_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    workspace_gib: float = 4.0
    optimization_level: int = 3  # TensorRT's builder optimisation level, 0-5
    timing_cache: str | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"TensorRT batch range MIN,OPT,MAX must satisfy 1 <= MIN <= OPT <= MAX, got "
                              f"{self.min_batch},{self.opt_batch},{self.max_batch}")
        if not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"TensorRT optimisation level must be 0-5, got {self.optimization_level}")
        if self.workspace_gib <= 0:
            raise ConfigError(f"TensorRT workspace must be positive (GiB), got {self.workspace_gib}")


def trtexec_command(onnx_path: Path, engine_path: Path, options: EngineOptions) -> str:
    """The equivalent trtexec call, for building on a machine where only trtexec exists (JetPack)."""
    metadata = read_onnx_metadata(onnx_path)
    height, width = metadata.input_size
    shape = lambda batch: f"images:{batch}x3x{height}x{width}"  # noqa: E731
    parts = [f"trtexec --onnx={onnx_path} --saveEngine={engine_path} --stronglyTyped",
             f"--minShapes={shape(options.min_batch)} --optShapes={shape(options.opt_batch)} "
             f"--maxShapes={shape(options.max_batch)}",
             f"--memPoolSize=workspace:{int(options.workspace_gib * 1024)}M "
             f"--builderOptimizationLevel={options.optimization_level}"]
    if options.timing_cache:
        parts.append(f"--timingCacheFile={options.timing_cache}")
    return " ".join(parts)


@dataclass(frozen=True)
class EngineCheck:
    """The engine against ONNX Runtime on the same file and images. An instance engine (`kind`
    "instances") is measured as its export check is (`InstanceAgreement`): `instances` to find,
    `matched` the percent found, `pixel_agreement` their mean mask IoU, `max_abs_diff` their
    largest score difference."""

    images: int
    max_abs_diff: float | None  # None where the file returns labels only
    pixel_agreement: float  # percent of pixels with the same label
    kind: str = "labels"
    instances: int = 0
    matched: float = 100.0

    def __str__(self) -> str:
        if self.kind == "instances":
            return (f"engine vs onnxruntime on {self.images} images: {self.matched:.2f}% of {self.instances} "
                    f"instances found, mean mask IoU {self.pixel_agreement:.2f}%, max |score difference| "
                    f"{self.max_abs_diff:.3g}")
        scores = "" if self.max_abs_diff is None else f"max |score difference| {self.max_abs_diff:.3g}, "
        return f"engine vs onnxruntime on {self.images} images: {scores}labels agree on {self.pixel_agreement:.2f}%"


def check_engine(engine_path: Path, onnx_path: Path, images: np.ndarray, precision: str,
                 load: Callable[[Path], object] | None = None) -> EngineCheck:
    """Run the engine and ONNX Runtime on `images` ((N, 3, H, W) float32); ExportError, and the engine
    and its sidecar deleted, when they disagree beyond the precision's tolerance (`engine_parity`,
    an instance file's `engine_instance_parity`). `load` makes the engine's predictor (default:
    the TensorRT one of the file's task)."""
    if load is None:
        from gkd_deploy.runtime.tensorrt_backend import tensorrt_predictor as load
    metadata = read_onnx_metadata(onnx_path)
    row = get_precision(precision)
    engine = load(engine_path)
    try:
        if metadata.is_instance:
            report = _instance_engine_check(engine, onnx_path, images, row.engine_instance_parity, metadata)
            problems = row.engine_instance_parity.problems(report.max_abs_diff, report.matched, report.pixel_agreement)
        else:
            report = _engine_check(engine, onnx_path, images)
            problems = row.engine_parity.problems(report.max_abs_diff, report.pixel_agreement)
    finally:
        getattr(engine, "release", lambda: None)()  # its GPU buffers and stream
    if problems:
        engine_path.unlink(missing_ok=True)
        sidecar_path(engine_path).unlink(missing_ok=True)
        raise ExportError(f"the TensorRT engine built from {onnx_path.name} does not compute what the ONNX file "
                          f"computes: {'; '.join(problems)} ({report}); it was deleted. Try another TensorRT "
                          "version, --opt-level, or the fp32 file")
    log.info("%s: %s", engine_path.name, report)
    return report


def _engine_check(engine, onnx_path: Path, images: np.ndarray) -> EngineCheck:
    from gkd_deploy.runtime.agreement import compare_predictors
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

    agreement = compare_predictors(OnnxRuntimePredictor(onnx_path, "cpu"), engine, images)
    return EngineCheck(images=len(images), max_abs_diff=agreement.max_abs_diff,
                       pixel_agreement=agreement.pixel_agreement)


def _instance_engine_check(engine, onnx_path: Path, images: np.ndarray, tolerance, metadata) -> EngineCheck:
    """The engine against the file run by ONNX Runtime, its Q/DQ pairs as written where it is an
    int8 file for TensorRT (`runs_qdq_as_written`), as the export check runs it."""
    from gkd_deploy.runtime.agreement import compare_instance_predictors
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimeInstancePredictor, runs_qdq_as_written

    reference = OnnxRuntimeInstancePredictor(onnx_path, "cpu", as_written=runs_qdq_as_written(metadata))
    agreement = compare_instance_predictors(reference, engine, images, margin=tolerance.max_score_diff,
                                            mask_threshold=metadata.segmenter_config.mask_threshold)
    return EngineCheck(images=len(images), max_abs_diff=agreement.max_abs_diff, pixel_agreement=agreement.mask_iou,
                       kind="instances", instances=agreement.required, matched=agreement.matched)


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions = EngineOptions(),
                 check_images: np.ndarray | None = None) -> Path:
    """Parse `onnx_path` as a strongly typed network and write a serialized engine + metadata sidecar;
    with `check_images`, the engine is then run against ONNX Runtime on them (`check_engine`)."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = read_onnx_metadata(onnx_path)
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError(
            "TensorRT is not installed here: pip install 'gkd-deploy[tensorrt]' (on Jetson it comes with "
            f"JetPack), or build the engine on the target with:\n  {trtexec_command(onnx_path, engine_path, options)}"
        ) from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.optimization_level
    cache = _timing_cache(config, options.timing_cache)
    height, width = metadata.input_size
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (options.min_batch, 3, height, width), (options.opt_batch, 3, height, width),
                      (options.max_batch, 3, height, width))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    with atomic_path(engine_path) as temporary:
        temporary.write_bytes(bytes(serialized))
    engine_metadata = metadata.to_json()
    sidecar = json.loads(engine_metadata)
    sidecar["extra"] = {**sidecar.get("extra", {}), "tensorrt": trt.__version__, "built_from": onnx_path.name,
                        "batch_range": [options.min_batch, options.max_batch]}
    with atomic_path(sidecar_path(engine_path)) as temporary:
        temporary.write_text(json.dumps(sidecar))
    if cache is not None and options.timing_cache:
        with atomic_path(options.timing_cache) as temporary:
            temporary.write_bytes(bytes(cache.serialize()))
    log.info("built %s with TensorRT %s", engine_path, trt.__version__)
    if check_images is not None:
        check_engine(engine_path, onnx_path, check_images, metadata.precision)
    return engine_path


def _timing_cache(config, path: str | None):
    if path is None:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
