"""ONNX Runtime predictor: CPU everywhere, the CUDA provider where onnxruntime-gpu and a GPU exist.

With the CUDA provider the inputs and outputs go through IO binding, so a batch is copied to the
device once instead of through host memory on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import ModelInfo
from gkd_deploy.runtime.metadata import read_onnx_metadata


def available_providers(device: str = "auto") -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("the CUDA provider of onnxruntime is not available: install onnxruntime-gpu "
                         "(pip uninstall onnxruntime && pip install 'gkd-deploy[gpu]') on a machine with a GPU")
    return ["CPUExecutionProvider"]


class OnnxRuntimePredictor:
    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path)
        self.metadata = metadata = read_onnx_metadata(self.path)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.providers = available_providers(device)
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"onnxruntime cannot load {self.path}: {error}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = metadata.outputs[0]
        self.use_cuda = self.providers[0] == "CUDAExecutionProvider"
        self.info = ModelInfo(class_set=metadata.class_set, input_size=metadata.input_size,
                              precision=metadata.precision, backend="onnxruntime", source=str(self.path),
                              patch_size=metadata.patch_size)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        if not self.use_cuda:
            return torch.from_numpy(self.session.run([self.output_name], {self.input_name: array})[0])
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, array)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])
