"""fp32 export -> int8 ONNX with explicit Q/DQ nodes, the form TensorRT builds int8 engines from.

Where the Q/DQ pairs go is the target's (`placement.py`: TensorRT's fusion rules, or onnxruntime
CPU's int8 kernels); `qdq_insert.py` writes them with the calibrated scales. Calibration runs
through onnxruntime's calibrator API, for two reasons: the images go through in passes of
`IMAGES_PER_PASS` (the histogram calibrators otherwise hold every intermediate tensor of every
image in memory at once), and the statistics are cached (`cache.py`), so exporting the same model
again skips the slow part.

The file written here keeps everything that is not int8 in fp32 (`remainder` fp32 in its
metadata); `gkd_deploy.exporters.fp16.convert_int8_remainder` turns that remainder to fp16.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationMethod, TensorsData, create_calibrator, save_tensors_data
from onnxruntime.quantization.calibrate import load_tensors_data

from gkd_deploy.calib.cache import cache_file, calibration_key
from gkd_deploy.calib.images import RECOMMENDED_MIN_COUNT, CalibrationSet
from gkd_deploy.calib.ort_output import quiet_onnxruntime
from gkd_deploy.calib.placement import TARGETS, name_nodes, place_qdq
from gkd_deploy.calib.qdq_insert import insert_qdq
from gkd_deploy.calib.qdq_rules import qdq_violations
from gkd_deploy.calib.reader import ImageBatchReader
from gkd_deploy.errors import ExportError
from gkd_deploy.runtime.metadata import INSTANCE_NETWORK_OUTPUTS, embed_metadata, metadata_of
from gkd_deploy.runtime.onnx_io import load_model, save_model

log = logging.getLogger(__name__)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# What is not int8 runs in this precision. TensorRT runs an fp32 remainder in fp32 (an int8 ViT
# engine is then slower than fp16); onnxruntime's CPU kernels are fast in fp32 and slow in fp16.
REMAINDERS = ("fp16", "fp32")
DEFAULT_REMAINDER = {"tensorrt": "fp16", "onnxruntime": "fp32"}
# Symmetric ranges everywhere: TensorRT takes only zero point 0.
CALIBRATOR_OPTIONS = {"symmetric": True}
# A pass holds every calibrated tensor of its images at once: about 0.6 GB per 512x512 image for a
# ViT-S (its attention maps), so few images per pass.
IMAGES_PER_PASS = 4


def quantize_int8(
    fp32_onnx: str | Path,
    out_path: str | Path,
    images: CalibrationSet | np.ndarray | torch.Tensor,
    *,
    method: str = "minmax",
    target: str = "tensorrt",
    quantize_sensitive: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Calibrate the fp32 export `fp32_onnx` on `images` and write its int8 Q/DQ copy to `out_path`.

    `images`: (N, 3, H, W) RGB 0..255 at the model's input size (a `CalibrationSet` or an
    array). `method`: minmax, entropy or percentile. `target`: tensorrt (Q/DQ where TensorRT fuses
    them, as NVIDIA's ModelOpt places them) or onnxruntime (where its CPU kernels are int8).
    `quantize_sensitive` also quantizes the inputs of LayerNorm, Softmax, GELU, InstanceNorm and
    the residual Adds (less accurate). An instance file's post-processing (everything after its raw
    logits, `INSTANCE_NETWORK_OUTPUTS`) gets no Q/DQ. With `cache_dir`, the calibration statistics are stored
    there and reused by the next call with the same model, images, method and calibrated ops.
    What is not int8 stays fp32; `gkd_deploy.exporters.fp16.convert_int8_remainder` makes it fp16.
    """
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise ExportError(f"unknown int8 target {target!r}; use one of {', '.join(TARGETS)}")
    model = load_model(fp32_onnx)
    metadata = metadata_of(model, str(fp32_onnx))
    if metadata.precision != "fp32":
        raise ExportError(f"{fp32_onnx} is a {metadata.precision} model; quantize the fp32 export")
    array = _calibration_array(images, metadata.input_size)
    name_nodes(model)
    # An instance file: only the network is quantized; its post-processing stays as exported.
    float_after = INSTANCE_NETWORK_OUTPUTS if metadata.is_instance else ()
    placement = place_qdq(model, target, quantize_sensitive=quantize_sensitive, float_after=float_after)
    op_types = placement.op_types
    with tempfile.TemporaryDirectory(prefix="gkd-int8-") as work:
        statistics = _statistics_file(Path(fp32_onnx), array, method, op_types, metadata.input_name, cache_dir,
                                      Path(work))
        ranges = {name: data.range_value for name, data in load_tensors_data(str(statistics)).data.items()}
    try:
        pairs = insert_qdq(model, placement, ranges, unsigned_activations=target == "onnxruntime")
    except KeyError as missing:
        raise ExportError(f"calibration gave no range for tensor {missing}; this is a bug, please report it") from None
    # The onnxruntime placement has uint8 activations (zero point 128): TensorRT's rules are not its own.
    problems = qdq_violations(model) if target == "tensorrt" else []
    if problems:
        raise ExportError(f"the int8 model breaks TensorRT's Q/DQ rules: {'; '.join(problems[:5])}"
                          + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    calibration = {
        "method": method,
        "images": int(len(array)),
        "domains": list(images.domains) if isinstance(images, CalibrationSet) else [],
        "target": target,
        "remainder": "fp32",
        "quantize_sensitive": quantize_sensitive,
        "quantized_op_types": op_types,
    }
    embed_metadata(model, metadata.with_precision("int8", calibration))
    save_model(model, out_path)
    log.info("wrote int8 Q/DQ model %s for %s (%d activation and %d weight Q/DQ; %s calibration on %d images)",
             out_path, target, pairs, len(placement.weights), method, len(array))
    return Path(out_path)


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

