"""The backends a benchmark can run, chosen by name from one table.

    torch              PyTorch eager: fp32, and bf16 / fp16 through autocast (the run's checkpoint)
    torch-compile      the same module through torch.compile (Inductor), one static graph per batch size
    onnxruntime        ONNX Runtime, CPU provider: model-<precision>.onnx (fp32, fp16, int8 Q/DQ)
    onnxruntime-cuda   ONNX Runtime, CUDA provider (onnxruntime-gpu), the same files
    tensorrt           a TensorRT engine, model-<precision>.engine, built from those files

Every combination a backend cannot run gets a reason instead of a result: the backend is not
installed or has no device here, the precision does not exist for it (int8 lives in the Q/DQ ONNX
file, not in PyTorch), the file is not exported yet (the reason names the `gkd export` command),
or the file was exported at another input size. An instance segmenter runs on the same backends
and precisions.

A loaded model is a `Runner`: the predictor call (images (B, 3, H, W) float32 RGB 0..255 -> class
scores or labels; an instance model's masks, classes and scores, post-processing included), how
the benchmark's numpy input becomes what the call takes (a torch tensor on the model's device for
torch and TensorRT; the array itself for ONNX Runtime, which therefore runs without torch), the clock that times it (CUDA events for torch on CUDA, perf_counter with synchronisation
for the other GPU backends, perf_counter on the CPU), and how its GPU memory is measured.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gkd_deploy.benchmark.memory import torch_with_cuda
from gkd_deploy.benchmark.sources import ModelSource
from gkd_deploy.benchmark.timing import Clock, CudaEventClock, WallClock
from gkd_deploy.precision import EXPORT_PRECISIONS, TORCH_PRECISIONS
from gkd_deploy.runtime.metadata import read_onnx_metadata, read_sidecar_metadata
from gkd_deploy.runtime.cuda_memory import cuda_gpu_count, cuda_python_available
from gkd_deploy.runtime.tensorrt_backend import tensorrt_available

GPU_ONLY = "--device cpu: GPU backends are not run"

Predict = Callable[[Any], Any]  # what `Runner.prepare` made -> class scores


def _as_is(images: np.ndarray) -> np.ndarray:
    return images


@dataclass
class Runner:
    """`prepare` turns the benchmark's (B, 3, H, W) float32 numpy images into `predict`'s input,
    once, before the timed runs. `predictor`: the runtime predictor of an exported file, which the
    mIoU is scored with (its scores); `predict` is what an application calls: the labels output
    where the file has one."""

    predict: Predict
    prepare: Callable[[np.ndarray], Any]
    clock: Clock
    gpu_memory: str | None  # "allocator", "device" or None (see memory.GpuPeakMemory)
    file: Path
    release: Callable[[], None] = field(default=lambda: None)
    predictor: Any = None


def _application_call(predictor) -> Predict:
    """What an application runs: the labels output where the file has one (only it is copied back);
    an instance model's masks, classes and scores."""
    return predictor.labels if "labels" in predictor.info.outputs else predictor


def _torch_input(device) -> Callable[[np.ndarray], Any]:
    import torch

    return lambda images: torch.from_numpy(images).to(device)


def _resolve_device(device: str):
    from gkd_deploy.devices import resolve_device

    return resolve_device(device)




@dataclass(frozen=True)
class Backend:
    """`runs`: the kind of file it runs ("checkpoint", "onnx" or "engine")."""

    name: str
    runs: str
    precisions: tuple[str, ...]
    unavailable: Callable[[str], str | None]  # device setting -> reason, or None when it can run
    load: Callable[[Path, str, str], Runner]  # (file, precision, device setting) -> runner
    may_use_gpu: bool = True  # False: never on a GPU, so no GPU memory is probed (nor torch imported for it)


def _cuda_missing(device: str) -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (an edge install runs exported files): pip install 'gkd-deploy[train]'"
    if device.startswith("cuda") and torch_with_cuda() is None:
        return f"--device {device}: no CUDA GPU is visible to PyTorch"
    return None


def _compile_unavailable(device: str) -> str | None:
    reason = _cuda_missing(device)
    if reason:
        return reason
    if _resolve_device(device).type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs Triton (pip install triton)"
    elif not any(shutil.which(compiler) for compiler in ("g++", "c++", "clang++")):
        return "torch.compile on the CPU needs a C++ compiler (g++ or clang++) for Inductor"
    return None


def _onnxruntime_unavailable(device: str) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


def _onnxruntime_cuda_unavailable(device: str) -> str | None:
    if device == "cpu":
        return GPU_ONLY
    reason = _onnxruntime_unavailable(device)
    if reason:
        return reason
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return ("the CUDA provider of onnxruntime is not installed: pip uninstall onnxruntime && "
                "pip install 'gkd-deploy[gpu]' (onnxruntime-gpu)")
    return None  # whether a GPU is usable, the predictor finds out when it starts the provider


def _tensorrt_unavailable(device: str) -> str | None:
    if device == "cpu":
        return GPU_ONLY
    if not tensorrt_available():
        return "TensorRT is not installed: pip install 'gkd-deploy[tensorrt]' (JetPack's TensorRT on a Jetson)"
    if not cuda_python_available():
        return "TensorRT engines run on GPU buffers from NVIDIA's cuda-python: pip install 'gkd-deploy[tensorrt]'"
    if cuda_gpu_count() == 0:
        return "TensorRT needs a CUDA GPU; cuda-python sees none here"
    return None


def _load_torch(file: Path, precision: str, device: str, compile_model: bool = False) -> Runner:
    from gkd_deploy.runtime.torch_backend import torch_predictor

    predictor = torch_predictor(file, device, precision=precision, compile=compile_model)
    cuda = predictor.device.type == "cuda"
    return Runner(predictor.forward, _torch_input(predictor.device), CudaEventClock() if cuda else WallClock(),
                  "allocator" if cuda else None, file, predictor.release)


def _load_torch_compile(file: Path, precision: str, device: str) -> Runner:
    return _load_torch(file, precision, device, compile_model=True)


def _load_onnxruntime(file: Path, precision: str, device: str) -> Runner:
    from gkd_deploy.runtime.onnxruntime_backend import onnxruntime_predictor

    predictor = onnxruntime_predictor(file, "cpu")
    return Runner(_application_call(predictor), _as_is, WallClock(), None, file, predictor=predictor)


def _load_onnxruntime_cuda(file: Path, precision: str, device: str) -> Runner:
    from gkd_deploy.runtime.onnxruntime_backend import onnxruntime_predictor

    # The predictor binds host input and copies its output back (which waits for the GPU), so inputs
    # stay on the host: that copy is part of what an application pays.
    predictor = onnxruntime_predictor(file, "cuda")
    return Runner(_application_call(predictor), _as_is, WallClock(), "device", file, predictor=predictor)


def _load_tensorrt(file: Path, precision: str, device: str) -> Runner:
    from gkd_deploy.runtime.tensorrt_backend import tensorrt_predictor

    # As onnxruntime-cuda: host images in, the application's output copied back (the call waits for
    # the GPU); `resident` gives the engine's compute time without the copies.
    predictor = tensorrt_predictor(file, device)
    return Runner(_application_call(predictor), _as_is, WallClock(), "device", file, predictor.release,
                  predictor=predictor)


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", "checkpoint", TORCH_PRECISIONS, _cuda_missing, _load_torch),
    "torch-compile": Backend("torch-compile", "checkpoint", TORCH_PRECISIONS, _compile_unavailable,
                             _load_torch_compile),
    "onnxruntime": Backend("onnxruntime", "onnx", EXPORT_PRECISIONS, _onnxruntime_unavailable, _load_onnxruntime,
                           may_use_gpu=False),
    "onnxruntime-cuda": Backend("onnxruntime-cuda", "onnx", EXPORT_PRECISIONS, _onnxruntime_cuda_unavailable,
                                _load_onnxruntime_cuda),
    "tensorrt": Backend("tensorrt", "engine", EXPORT_PRECISIONS, _tensorrt_unavailable, _load_tensorrt),
}


def _precision_reason(backend: Backend, precision: str) -> str:
    if backend.runs == "checkpoint" and precision == "int8":
        return ("int8 lives in the Q/DQ ONNX file (model-int8.onnx), not in PyTorch: benchmark it with "
                "--backends onnxruntime or tensorrt")
    return (f"{backend.name} runs the exported files, which exist in {', '.join(EXPORT_PRECISIONS)}; "
            f"{precision} is a torch autocast precision")


def _device_reason(precision: str, device: str) -> str | None:
    import torch

    target = _resolve_device(device)
    if precision == "bf16" and target.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(target)} has no bf16 (needs compute capability 8.0 or newer)"
    return None


def _kind_reason(backend: Backend, source: ModelSource) -> str | None:
    if backend.runs == "checkpoint" and source.kind != "checkpoint":
        return (f"{source.path.name} is an exported file; {backend.name} runs the checkpoint it came from: "
                f"give {source.origin} as --model")
    if backend.runs == "onnx" and source.kind == "engine":
        return f"{source.path.name} is a TensorRT engine; it runs on tensorrt only"
    return None


def _file_for(backend: Backend, source: ModelSource, precision: str) -> tuple[Path | None, str | None]:
    """The file `backend` runs for `source` at `precision`, or why there is none."""
    if backend.runs == "checkpoint":
        return source.checkpoint, None
    path = source.onnx_file(precision) if backend.runs == "onnx" else source.engine_file(precision)
    command = missing_file_command(backend, source, precision)
    if command is None:
        return path, None
    where = " on this machine" if backend.runs == "engine" else ""
    return None, f"no {path.name} in {path.parent}: run `{command}`{where}"


def missing_file_command(backend: Backend, source: ModelSource, precision: str, device: str | None = None) -> str | None:
    """The `gkd export` command that writes the file `backend` needs for `source` at `precision`,
    or None when it is there, the backend runs the checkpoint itself, or (given the `device`
    setting) the combination could not run here even with the file."""
    if backend.runs == "checkpoint" or precision not in backend.precisions:
        return None
    if device is not None and (backend.unavailable(device) or _kind_reason(backend, source)):
        return None
    engine = backend.runs == "engine"
    path = source.engine_file(precision) if engine else source.onnx_file(precision)
    return None if path.is_file() else source.export_command(precision, engine=engine)


def _size_reason(backend: Backend, source: ModelSource, file: Path, input_size: tuple[int, int]) -> str | None:
    height, width = input_size
    if backend.runs == "checkpoint":
        patch = source.patch_size
        if height % patch or width % patch:
            return f"{width}x{height} is not a multiple of the patch size {patch}"
        return None
    metadata = read_onnx_metadata(file) if backend.runs == "onnx" else read_sidecar_metadata(file)
    exported_height, exported_width = metadata.input_size
    if (exported_height, exported_width) != (height, width):
        return (f"{file.name} is exported at {exported_width}x{exported_height}, not {width}x{height}: export "
                f"another with `gkd export {source.origin} --size {width}x{height} --out DIR` and benchmark "
                "DIR's files")
    return None


def resolve_file(backend: Backend, source: ModelSource, precision: str, input_size: tuple[int, int],
                 device: str) -> tuple[Path | None, str | None]:
    """(file to run, None), or (None, the reason this combination is skipped)."""
    reason = backend.unavailable(device) or _kind_reason(backend, source)
    if reason:
        return None, reason
    if precision not in backend.precisions:
        return None, _precision_reason(backend, precision)
    file, reason = _file_for(backend, source, precision)
    if reason:
        return None, reason
    reason = _size_reason(backend, source, file, input_size)
    if reason is None and backend.runs == "checkpoint":
        reason = _device_reason(precision, device)
    return (None, reason) if reason else (file, None)
