"""INT8 calibration: calibration sets from domain data and explicit Q/DQ quantization.

Importable as `gkd_deploy.calib`; depends only on `gkd_deploy` (the exporters build on it, not the
other way round).

    calibration_images(specs, count, input_size, seed) -> CalibrationSet   windows of domain images
    quantize_int8(fp32_onnx, out_path, images, method=, quantize_sensitive=, cache_dir=)
                                                                            int8 Q/DQ .onnx
    qdq_violations(model) -> [str]                                          TensorRT's Q/DQ rules
"""

from gkd_deploy.calib.images import DEFAULT_COUNT, RECOMMENDED_MIN_COUNT, CalibrationSet, calibration_images
from gkd_deploy.calib.qdq_rules import qdq_violations
from gkd_deploy.calib.quantize import METHODS, quantize_int8

__all__ = [
    "DEFAULT_COUNT",
    "METHODS",
    "RECOMMENDED_MIN_COUNT",
    "CalibrationSet",
    "calibration_images",
    "qdq_violations",
    "quantize_int8",
]
