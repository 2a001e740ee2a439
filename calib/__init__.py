"""INT8 calibration: calibration sets from domain data and explicit Q/DQ quantization.

Importable as `gkd_deploy.calib`; depends only on `gkd_deploy` (the exporters build on it, not the
other way round).

    calibration_images(specs, count, input_size, seed) -> CalibrationSet   windows of domain images
    quantize_int8(fp32_onnx, out_path, images, method=, target=, quantize_sensitive=, cache_dir=)
                                                                            int8 Q/DQ .onnx
    place_qdq(model, target) -> Placement                                   where the Q/DQ pairs go
    qdq_violations(model) -> [str]                                          TensorRT's Q/DQ rules
"""

from gkd_deploy.calib.images import DEFAULT_COUNT, RECOMMENDED_MIN_COUNT, CalibrationSet, calibration_images
from gkd_deploy.calib.placement import TARGETS, Placement, place_qdq
from gkd_deploy.calib.qdq_rules import qdq_violations
from gkd_deploy.calib.quantize import DEFAULT_REMAINDER, METHODS, REMAINDERS, quantize_int8

__all__ = [
    "DEFAULT_COUNT",
    "DEFAULT_REMAINDER",
    "METHODS",
    "Placement",
    "REMAINDERS",
    "TARGETS",
    "RECOMMENDED_MIN_COUNT",
    "CalibrationSet",
    "calibration_images",
    "place_qdq",
    "qdq_violations",
    "quantize_int8",
]
