"""TensorRT predictor: a serialized engine (built by `gkd export --format trt` or trtexec) and its
metadata sidecar. TensorRT is optional and imported only here, when an engine is loaded.

Engines are tied to the GPU model and TensorRT version that built them: build on the target.
Uses the TensorRT 10 tensor-address API (`set_tensor_address`, `execute_async_v3`) with torch
CUDA tensors as buffers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import ModelInfo
from gkd_deploy.runtime.metadata import read_sidecar_metadata


def tensorrt_available() -> bool:
    """Whether the TensorRT Python package is installed here (found, not imported)."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise ModelError("TensorRT is not installed: pip install 'gkd-deploy[tensorrt]' (or JetPack's TensorRT on "
                         "Jetson), or run the .onnx file with onnxruntime") from None
    return tensorrt


class TensorRTPredictor:
    def __init__(self, path: str | Path, device: str = "auto") -> None:
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise ModelError("a TensorRT engine needs a CUDA GPU; none is visible")
        self.path = Path(path)
        self.metadata = metadata = read_sidecar_metadata(self.path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT cannot deserialize {self.path}: engines only run on the GPU model and "
                             "TensorRT version that built them; rebuild it from the .onnx file on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input_name = inputs[0]
        self.output_name = metadata.outputs[0]
        self.output_names = [n for n in names if n not in inputs]
        self.info = ModelInfo(class_set=metadata.class_set, input_size=metadata.input_size,
                              precision=metadata.precision, backend="tensorrt", source=str(self.path),
                              patch_size=metadata.patch_size)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to("cuda", non_blocking=True).float().contiguous()
        self.context.set_input_shape(self.input_name, tuple(images.shape))
        self.context.set_tensor_address(self.input_name, images.data_ptr())
        outputs = {}
        for name in self.output_names:
            dtype = torch.int64 if name == "labels" else torch.float32
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"TensorRT failed to run {self.path}")
        stream.synchronize()
        return outputs[self.output_name]
