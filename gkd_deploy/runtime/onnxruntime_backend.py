"""ONNX Runtime predictor: CPU everywhere, the CUDA provider where onnxruntime-gpu and a GPU exist.

Needs neither torch nor the `onnx` package: numpy arrays in and out, the metadata read from the
file's bytes. With the CUDA provider a batch is copied to the device once per call and the scores
back once (IO binding); the session itself never stages through other host buffers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.errors import ModelError
from gkd_deploy.runtime.base import ModelInfo, labels_of, no_label_map, require_scores
from gkd_deploy.runtime.metadata import read_onnx_metadata


def available_providers(device: str = "auto") -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        # Without a usable GPU onnxruntime falls back to the CPU provider (see `use_cuda`).
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("the CUDA provider of onnxruntime is not available: install onnxruntime-gpu "
                         "(pip uninstall onnxruntime && pip install 'gkd-deploy[gpu]') on a machine with a GPU")
    return ["CPUExecutionProvider"]


def runs_qdq_as_written(metadata) -> bool:
    """Whether a check should run this file's Q/DQ pairs as written rather than fused into ONNX
    Runtime's int8 kernels: an int8 file for TensorRT (which computes Q/DQ exactly, int32 sums).
    Its int8 activations make ONNX Runtime's x86 CPU provider fuse signed x signed int8 kernels,
    whose pairwise int16 sums saturate on CPUs without VNNI (`calib.qdq_insert`): measured on such
    a CPU (AVX2), an instance file with an fp32 remainder found 66.7% of PyTorch's instances fused
    and 100% as written. The onnxruntime target's files are made for those kernels and keep them."""
    calibration = metadata.extra.get("calibration") or {}
    return metadata.precision == "int8" and calibration.get("target") == "tensorrt"


class _OnnxRuntimeSession:
    """An exported file opened for inference: its metadata, a session on the chosen providers, its
    `ModelInfo`. `as_written`: no graph optimisations (Q/DQ pairs run as the file has them, not
    fused into int8 kernels; slower: for checks, see `runs_qdq_as_written`)."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 as_written: bool = False) -> None:
        import onnxruntime

        self.path = Path(path)
        self.metadata = metadata = read_onnx_metadata(self.path)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT warns about initializers it removes itself
        if as_written:
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.providers = available_providers(device)
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"onnxruntime cannot load {self.path}: {error}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.use_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"
        if device == "cuda" and not self.use_cuda:
            raise ModelError("onnxruntime's CUDA provider could not start (no GPU visible, or CUDA/cuDNN libraries "
                             "missing); use --device cpu")
        self.info = ModelInfo(class_set=metadata.class_set, input_size=metadata.input_size,
                              precision=metadata.precision, backend="onnxruntime", source=str(self.path),
                              patch_size=metadata.patch_size, outputs=tuple(metadata.outputs), task=metadata.task)

    def _resident(self, images: np.ndarray, outputs: tuple[str, ...]) -> "ResidentRun":
        """A call that runs the model on `images` copied once to the session's device (the GPU with
        the CUDA provider), the `outputs` left there: what the model costs without the host copies
        an application also pays (trtexec's GPU compute time)."""
        import onnxruntime

        device = "cuda" if self.use_cuda else "cpu"
        value = onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(images, dtype=np.float32), device, 0)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, value)
        for output in outputs:
            binding.bind_output(output, device)
        return ResidentRun(self.session, binding)


class OnnxRuntimeInstancePredictor(_OnnxRuntimeSession):
    """An exported instance model: numpy images in, the K instances of every image out (the
    post-processing is in the graph)."""

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks, classes, scores = self.session.run(list(self.info.outputs),
                                                  {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})
        return masks.astype(bool), classes, scores

    def labels(self, images: np.ndarray) -> np.ndarray:
        raise no_label_map(self.info)

    def resident(self, images: np.ndarray) -> "ResidentRun":
        """The model on device-resident `images`, its masks, classes and scores left on the device."""
        return self._resident(images, tuple(self.info.outputs))


class OnnxRuntimePredictor(_OnnxRuntimeSession):
    def __call__(self, images: np.ndarray) -> np.ndarray:
        require_scores(self.info, "this call")
        return self._run("scores", images)

    def labels(self, images: np.ndarray) -> np.ndarray:
        if "labels" in self.info.outputs:
            return self._run("labels", images)  # only the labels are fetched (and copied back)
        return labels_of(self._run("scores", images))

    def resident(self, images: np.ndarray, output: str | None = None) -> "ResidentRun":
        """The model on device-resident `images` (see `_resident`), one output left on the device:
        `output`, default the labels output where the file has one."""
        return self._resident(images, (output or ("labels" if "labels" in self.info.outputs else "scores"),))

    def _run(self, output: str, images: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(images, dtype=np.float32)
        if not self.use_cuda:
            return self.session.run([output], {self.input_name: array})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, array)
        binding.bind_output(output, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class ResidentRun:
    """One bound input and its bound outputs: calling it runs the model (and waits for the device);
    `fetch` copies the first output of the last run to the host."""

    def __init__(self, session, binding) -> None:
        self.session, self.binding = session, binding

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def fetch(self) -> np.ndarray:
        return self.binding.copy_outputs_to_cpu()[0]


def onnxruntime_predictor(path: str | Path,
                          device: str = "auto") -> OnnxRuntimePredictor | OnnxRuntimeInstancePredictor:
    """The predictor of an exported file, by the task its metadata names."""
    predictor = OnnxRuntimeInstancePredictor if read_onnx_metadata(path).is_instance else OnnxRuntimePredictor
    return predictor(path, device)
