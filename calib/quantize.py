"""fp32 export -> int8 ONNX with explicit Q/DQ nodes, the form TensorRT builds int8 engines from.

onnxruntime's static quantizer does the graph work (`quantize_static`, QDQ format). Calibration
runs through its lower-level calibrator API instead of inside `quantize_static`, for two reasons:
the images go through in passes of `IMAGES_PER_PASS` (the histogram calibrators otherwise hold
every intermediate tensor of every image in memory at once), and the statistics are cached
(`cache.py`), so exporting the same model again skips the slow part. `quantize_static` then
reads the statistics from that file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationMethod, QuantFormat, QuantType, TensorsData, create_calibrator, quantize_static, save_tensors_data,
)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from gkd_deploy.calib.cache import cache_file, calibration_key
from gkd_deploy.calib.images import RECOMMENDED_MIN_COUNT, CalibrationSet
from gkd_deploy.calib.ort_output import quiet_onnxruntime
from gkd_deploy.calib.qdq_rules import qdq_violations
from gkd_deploy.calib.reader import ImageBatchReader
from gkd_deploy.errors import ExportError
from gkd_deploy.runtime.metadata import embed_metadata, metadata_of
from gkd_deploy.runtime.onnx_io import load_model, save_model

log = logging.getLogger(__name__)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# Quantizing LayerNorm, Softmax, GELU or the residual Adds wrecks a ViT's accuracy (their inputs
# have outlier channels no single int8 scale covers); the matrix products carry the compute. Only
# their inputs are quantized: onnxruntime would also put Q/DQ on their outputs, which feed the
# bias and residual Adds (TensorRT, like NVIDIA's own tools, wants Q/DQ at inputs only).
DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")
ALL_OP_TYPES = tuple(sorted(set(QLinearOpsRegistry) | set(QDQRegistry)))
# Symmetric ranges everywhere: TensorRT takes only zero point 0. Biases stay float (TensorRT
# parses no int32 DequantizeLinear; it fuses the bias into the int8 kernel itself).
CALIBRATOR_OPTIONS = {"symmetric": True}
QUANTIZER_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
IMAGES_PER_PASS = 32


def quantize_int8(
    fp32_onnx: str | Path,
    out_path: str | Path,
    images: CalibrationSet | np.ndarray | torch.Tensor,
    *,
    method: str = "minmax",
    quantize_sensitive: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Calibrate the fp32 export `fp32_onnx` on `images` and write its int8 Q/DQ copy to `out_path`.

    `images`: (N, 3, H, W) RGB 0..255 at the model's input size (a `CalibrationSet` or an
    array). `method`: minmax, entropy or percentile. Only Conv/Gemm/MatMul are quantized unless
    `quantize_sensitive` (then every op type onnxruntime can quantize). With `cache_dir`, the
    calibration statistics are stored there and reused by the next call with the same model,
    images and method.
    """
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    model = load_model(fp32_onnx)
    metadata = metadata_of(model, str(fp32_onnx))
    if metadata.precision != "fp32":
        raise ExportError(f"{fp32_onnx} is a {metadata.precision} model; quantize the fp32 export")
    array = _calibration_array(images, metadata.input_size)
    op_types = list(ALL_OP_TYPES if quantize_sensitive else DEFAULT_OP_TYPES)
    with tempfile.TemporaryDirectory(prefix="gkd-int8-") as work:
        statistics = _statistics_file(Path(fp32_onnx), array, method, op_types, metadata.input_name, cache_dir,
                                      Path(work))
        quantized_path = Path(work) / "int8.onnx"
        with quiet_onnxruntime():
            quantize_static(
                str(fp32_onnx), str(quantized_path), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types, per_channel=True, reduce_range=False,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=METHODS[method],
                extra_options=_quantizer_options(quantize_sensitive), calibration_cache_path=statistics,
            )
        quantized = onnx.load_model(str(quantized_path))
    problems = qdq_violations(quantized)
    if problems:
        raise ExportError(f"the int8 model breaks TensorRT's Q/DQ rules: {'; '.join(problems[:5])}"
                          + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    calibration = {
        "method": method,
        "images": int(len(array)),
        "domains": list(images.domains) if isinstance(images, CalibrationSet) else [],
        "quantized_op_types": op_types,
    }
    embed_metadata(quantized, metadata.with_precision("int8", calibration))
    save_model(quantized, out_path)
    log.info("wrote int8 Q/DQ model %s (%s calibration on %d images)", out_path, method, len(array))
    return Path(out_path)


def _quantizer_options(quantize_sensitive: bool) -> dict:
    options = dict(QUANTIZER_OPTIONS)
    if not quantize_sensitive:
        options["OpTypesToExcludeOutputQuantization"] = list(DEFAULT_OP_TYPES)
    return options


def compute_statistics(model_path: Path, images: np.ndarray, method: str, op_types: list[str],
                       input_name: str, work: Path) -> TensorsData:
    """Run the calibrator over `images` (N, 3, H, W) in passes; the statistics of every calibrated tensor."""
    with quiet_onnxruntime():
        calibrator = create_calibrator(
            model_path, op_types, augmented_model_path=str(work / "augmented.onnx"),
            calibrate_method=METHODS[method], providers=["CPUExecutionProvider"], extra_options=dict(CALIBRATOR_OPTIONS),
        )
        # Every pass merges into the calibrator's running ranges (MinMax) or histograms.
        for start in range(0, len(images), IMAGES_PER_PASS):
            calibrator.collect_data(ImageBatchReader(images[start:start + IMAGES_PER_PASS], input_name))
        return calibrator.compute_data()


def _statistics_file(model_path: Path, images: np.ndarray, method: str, op_types: list[str], input_name: str,
                     cache_dir: str | Path | None, work: Path) -> Path:
    """A JSON file of calibration statistics: from the cache, or computed (and cached) now."""
    if cache_dir is None:
        path = work / "statistics.json"
    else:
        key = calibration_key(model_path, images, method, {"op_types": op_types, "calibrator": CALIBRATOR_OPTIONS})
        path = cache_file(cache_dir, key, method)
        if path.is_file():
            log.info("calibration: reusing the %s statistics in %s", method, path)
            return path
    log.info("calibration: %s statistics over %d images", method, len(images))
    try:
        save_tensors_data(compute_statistics(model_path, images, method, op_types, input_name, work), path)
    except OSError as error:
        raise ExportError(f"cannot write calibration statistics to {path}: {error}") from None
    return path


def _calibration_array(images: CalibrationSet | np.ndarray | torch.Tensor, input_size: tuple[int, int]) -> np.ndarray:
    """(N, 3, H, W) array of the images, checked against the model's input size."""
    if isinstance(images, CalibrationSet):
        array = images.images
    elif isinstance(images, torch.Tensor):
        array = images.detach().cpu().numpy()
    else:
        array = np.asarray(images)
    expected = (3, *input_size)
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise ExportError(f"calibration images must be (N, {', '.join(map(str, expected))}) for this model; "
                          f"got shape {tuple(array.shape)}")
    if len(array) == 0:
        raise ExportError("no calibration images: give at least one (several hundred recommended)")
    if not isinstance(images, CalibrationSet) and len(array) < RECOMMENDED_MIN_COUNT:
        log.warning("calibrating with %d images; at least %d are recommended", len(array), RECOMMENDED_MIN_COUNT)
    return array

