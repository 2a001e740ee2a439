"""TensorRT predictor: a serialized engine (built by `gkd export --format trt` or trtexec) and its
metadata sidecar. TensorRT is optional and imported only here, when an engine is loaded.

Engines are tied to the GPU model and TensorRT version that built them: build on the target.
Uses the TensorRT 10 tensor-address API (`set_tensor_address`, `execute_async_v3`, the same in
TensorRT 11) on GPU buffers from NVIDIA's cuda-python (`runtime.cuda_memory`): running an engine
imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import ModelInfo, no_label_map, require_scores
from gkd_deploy.runtime.cuda_memory import CudaDevice, cuda_index
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
    """numpy in, numpy out, like every predictor; images and outputs in GPU buffers of its own
    (`cuda_memory`), so that no torch is needed. `resident(images)` times the engine alone."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        trt = import_tensorrt()
        self.cuda = CudaDevice(cuda_index(device))
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
        self.output_dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in self.output_names}
        self.buffers = {n: self.cuda.buffer() for n in names}
        self.info = ModelInfo(class_set=metadata.class_set, input_size=metadata.input_size,
                              precision=metadata.precision, backend="tensorrt", source=str(self.path),
                              patch_size=metadata.patch_size, outputs=tuple(metadata.outputs), task=metadata.task)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        require_scores(self.info, "this call")
        return self.execute(images, ("scores",))["scores"]

    def labels(self, images: np.ndarray) -> np.ndarray:
        if "labels" in self.output_names:
            return self.execute(images, ("labels",))["labels"]
        return self.execute(images, ("scores",))["scores"].argmax(1).astype(np.uint8)

    def execute(self, images: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Run the engine on (B, 3, H, W) images; the outputs `names` (default: all) copied back, by name."""
        shapes = self._bind(images)
        self._run()
        outputs = {name: self.cuda.copy_out(self.buffers[name], shapes[name], self.output_dtypes[name])
                   for name in (names or self.output_names)}
        self.cuda.synchronize()
        return outputs

    def resident(self, images: np.ndarray) -> Callable[[], None]:
        """A call that runs the engine on `images`, copied to the GPU once, and waits for it: no
        copies in or out (what trtexec's GPU compute time measures)."""
        self._bind(images)
        self.cuda.synchronize()

        def run() -> None:
            self._run()
            self.cuda.synchronize()
        return run

    def release(self) -> None:
        """Free the GPU buffers and the stream."""
        for buffer in self.buffers.values():
            buffer.free()
        self.cuda.close()

    def _bind(self, images: np.ndarray) -> dict[str, tuple[int, ...]]:
        """Queue the images' copy to the GPU, set every tensor's shape and address; output shapes."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        address = self.cuda.copy_in(self.buffers[self.input_name], images)
        self.context.set_input_shape(self.input_name, tuple(images.shape))
        self.context.set_tensor_address(self.input_name, address)
        shapes = {}
        for name in self.output_names:
            shapes[name] = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shapes[name])) * self.output_dtypes[name].itemsize
            self.context.set_tensor_address(name, self.buffers[name].reserve(nbytes))
        return shapes

    def _run(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise ModelError(f"TensorRT failed to run {self.path}")


class TensorRTInstancePredictor(TensorRTPredictor):
    """An engine of an instance file: the K instances of every image (post-processing in the engine)."""

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outputs = self.execute(images, tuple(self.info.outputs))
        masks, classes, scores = (outputs[name] for name in self.info.outputs)
        return masks.astype(bool), classes.astype(np.int64, copy=False), scores

    def labels(self, images: np.ndarray) -> np.ndarray:
        raise no_label_map(self.info)


def tensorrt_predictor(path: str | Path, device: str = "auto") -> TensorRTPredictor | TensorRTInstancePredictor:
    """The predictor of an engine, by the task its metadata sidecar names."""
    predictor = TensorRTInstancePredictor if read_sidecar_metadata(path).is_instance else TensorRTPredictor
    return predictor(path, device)
