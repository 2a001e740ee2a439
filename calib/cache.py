"""Where calibration statistics are cached: one JSON file per model, image set and method.

Collecting statistics is the slow part of int8 quantization (the model runs over every
calibration image); quantizing from them takes a moment. Keyed by what they depend on, a cached
file is reused by the next export of the same model with the same images, and never by another.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from gkd_deploy.fileio import file_sha256

# Bump when what is stored, or how it is computed, changes.
CACHE_FORMAT = 1


def calibration_key(model_path: str | Path, images: np.ndarray, method: str, settings: dict[str, Any]) -> str:
    """sha256 over the model file, the images (values, shape, dtype), the method and its settings."""
    header = {
        "format": CACHE_FORMAT,
        "onnxruntime": onnxruntime.__version__,
        "model_sha256": file_sha256(model_path),
        "images": {"shape": list(images.shape), "dtype": str(images.dtype)},
        "method": method,
        "settings": settings,
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for image in images:  # one image at a time: no second copy of the whole set
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def cache_file(cache_dir: str | Path, key: str, method: str) -> Path:
    return Path(cache_dir) / f"calibration-{method}-{key[:24]}.json"
