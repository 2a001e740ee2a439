"""GPU buffers and a stream for the TensorRT predictor, through NVIDIA's `cuda-python` bindings.

TensorRT runs an engine on device addresses; something has to allocate them and copy images in
and outputs out. NVIDIA's own TensorRT samples do that with `cuda-python` (`cudaMalloc`,
`cudaMemcpyAsync`, `cudaStreamCreate`), a small package with no dependency on torch, so an edge
install runs engines without torch (on a Jetson: `pip install cuda-python` matching JetPack's CUDA).
`cuda.bindings.runtime` is the module's name from cuda-python 12.6 on, `cuda.cudart` before.
Every call returns `(error, *results)`; `_check` turns an error into one `ModelError` line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gkd_deploy.errors import ModelError

INSTALL_HINT = "pip install 'gkd-deploy[tensorrt]' (it brings cuda-python; on a Jetson, the cuda-python of JetPack's CUDA)"


def cuda_python_available() -> bool:
    """Whether cuda-python's runtime bindings are installed (found, not imported)."""
    import importlib.util

    try:
        return any(importlib.util.find_spec(name) is not None for name in ("cuda.bindings", "cuda.cudart"))
    except ModuleNotFoundError:  # no `cuda` package at all
        return False


def import_cudart() -> Any:
    """The CUDA runtime bindings of cuda-python, whichever module name the installed version uses."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise ModelError(f"running a TensorRT engine needs NVIDIA's cuda-python: {INSTALL_HINT}") from None
    return runtime


def cuda_gpu_count() -> int:
    """The CUDA GPUs cuda-python sees (0 without cuda-python, a driver or a GPU)."""
    try:
        error, count = import_cudart().cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 - none usable, whatever the reason
        return 0
    return int(count) if int(error) == 0 else 0


def cuda_index(device: str) -> int:
    """The GPU a `--device` setting names for an engine: "auto" / "cuda" -> 0, "cuda:N" -> N."""
    name = str(device).strip().lower()
    if name in ("auto", "cuda"):
        return 0
    kind, _, index = name.partition(":")
    if kind == "cuda" and index.isdigit():
        return int(index)
    raise ModelError(f"a TensorRT engine runs on a CUDA GPU: --device {device!r} cannot run it; use auto, cuda "
                     "or cuda:N")


class DeviceBuffer:
    """One GPU allocation that grows to the largest size asked of it (`reserve`)."""

    def __init__(self, device: "CudaDevice") -> None:
        self.device, self.ptr, self.nbytes = device, 0, 0

    def reserve(self, nbytes: int) -> int:
        """The buffer's address, with room for at least `nbytes`."""
        if nbytes > self.nbytes:
            self.free()
            self.ptr = self.device.call("cudaMalloc", nbytes)
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self.device.call("cudaFree", self.ptr)
        self.ptr, self.nbytes = 0, 0


class CudaDevice:
    """A CUDA GPU (made current) and one stream on it; copies between numpy arrays and `DeviceBuffer`s."""

    def __init__(self, index: int = 0) -> None:
        self.cudart = import_cudart()
        count = self.call("cudaGetDeviceCount", what="find a CUDA GPU")
        if index >= count:
            raise ModelError(f"a TensorRT engine needs a CUDA GPU: cuda:{index} asked for, {count} visible"
                             + (" (numbered from 0)" if count else ""))
        self.call("cudaSetDevice", index)
        self.stream = self.call("cudaStreamCreate")

    @property
    def stream_handle(self) -> int:
        """The stream as the integer TensorRT's `execute_async_v3` takes."""
        return int(self.stream)

    def call(self, function: str, *args: Any, what: str | None = None) -> Any:
        """cudart.`function`(*args), its result (None, one value or a tuple); ModelError on an error."""
        error, *results = getattr(self.cudart, function)(*args)
        if int(error) != 0:
            raise ModelError(f"CUDA could not {what or function}: {self._error_text(error)}")
        return None if not results else results[0] if len(results) == 1 else tuple(results)

    def _error_text(self, error: Any) -> str:
        try:
            _, text = self.cudart.cudaGetErrorString(error)
            return text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # noqa: BLE001 - the error code itself is still worth showing
            return f"error {int(error)}"

    def buffer(self) -> DeviceBuffer:
        return DeviceBuffer(self)

    def copy_in(self, buffer: DeviceBuffer, array: np.ndarray) -> int:
        """Queue `array` (contiguous) into `buffer` on the stream; the buffer's address."""
        address = buffer.reserve(array.nbytes)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync", address, array.ctypes.data, array.nbytes, kind, self.stream)
        return address

    def copy_out(self, buffer: DeviceBuffer, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new host array of `shape` / `dtype` filled from `buffer` once the stream gets there
        (call `synchronize` before reading it)."""
        array = np.empty(shape, dtype=dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync", array.ctypes.data, buffer.ptr, array.nbytes, kind, self.stream)
        return array

    def synchronize(self) -> None:
        self.call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        if self.stream is not None:
            self.call("cudaStreamDestroy", self.stream)
            self.stream = None
