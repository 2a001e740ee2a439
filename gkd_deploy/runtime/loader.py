"""Choose the backend from the file a user names."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import InstancePredictor, Predictor


def _torch(path: Path, device: str) -> Predictor | InstancePredictor:
    from gkd_deploy.runtime.torch_backend import torch_predictor

    return torch_predictor(path, device)


def _onnxruntime(path: Path, device: str) -> Predictor | InstancePredictor:
    from gkd_deploy.runtime.onnxruntime_backend import onnxruntime_predictor

    return onnxruntime_predictor(path, device)


def _tensorrt(path: Path, device: str) -> Predictor | InstancePredictor:
    from gkd_deploy.runtime.tensorrt_backend import tensorrt_predictor

    return tensorrt_predictor(path, device)


BACKENDS: dict[str, Callable[[Path, str], Predictor]] = {
    ".safetensors": _torch,
    ".onnx": _onnxruntime,
    ".engine": _tensorrt,
    ".plan": _tensorrt,
}


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    """A run folder or checkpoint (torch), an .onnx file (onnxruntime) or an engine (tensorrt); an
    instance model (its checkpoint format or its file's metadata says so) gets an `InstancePredictor`."""
    path = Path(path)
    if path.is_dir():
        return _torch(path, device)
    if not path.exists():
        raise ModelError(f"{path} not found: give a run folder, a .safetensors checkpoint, an .onnx file or an engine")
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ModelError(f"{path}: cannot tell the model format from '{path.suffix}'; expected one of "
                         f"{', '.join(BACKENDS)} or a run folder")
    return backend(path, device)
