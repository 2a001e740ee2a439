"""TensorRT predictor: a serialized engine (built by `gkd export --format trt` or trtexec) and its
metadata sidecar. TensorRT is optional and imported only here, when an engine is loaded.

Engines are tied to the GPU model and TensorRT version that built them: build on the target.
Uses the TensorRT 10 tensor-address API (`set_tensor_address`, `execute_async_v3`) with torch
CUDA tensors as buffers: running an engine imports torch (ONNX files run without it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import ModelInfo, require_scores
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
        import torch

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
        self.output_names = [n for n in names if n not in inputs]
        self.info = ModelInfo(class_set=metadata.class_set, input_size=metadata.input_size,
                              precision=metadata.precision, backend="tensorrt", source=str(self.path),
                              patch_size=metadata.patch_size, outputs=tuple(metadata.outputs))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        return self.forward(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).cpu().numpy()

    def labels(self, images: np.ndarray) -> np.ndarray:
        import torch

        outputs = self.execute(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        if "labels" in outputs:
            return outputs["labels"].cpu().numpy()
        return outputs["scores"].argmax(1).to(torch.uint8).cpu().numpy()

    def forward(self, images):
        """(B, 3, H, W) torch tensor -> scores as a CUDA tensor (no copy back to the host)."""
        require_scores(self.info, "this call")
        return self.execute(images)["scores"]

    def execute(self, images) -> dict:
        """Runs the engine; every output as a CUDA tensor, by name."""
        import torch

        images = images.to("cuda", non_blocking=True).float().contiguous()
        self.context.set_input_shape(self.input_name, tuple(images.shape))
        self.context.set_tensor_address(self.input_name, images.data_ptr())
        outputs = {}
        for name in self.output_names:
            dtype = torch.uint8 if name == "labels" else torch.float32
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"TensorRT failed to run {self.path}")
        stream.synchronize()
        return outputs
