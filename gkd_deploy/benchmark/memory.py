"""Peak memory of one benchmark combination: host RSS and GPU memory, in MB (10^6 bytes).

Host: Linux keeps the process's peak resident set size (`VmHWM` in /proc/self/status) and resets
it to the current size when "5" is written to /proc/self/clear_refs, so each combination gets
its own peak (the model it loaded and the inputs are resident, so they count, and so does the
rest of the process: the interpreter, the libraries, memory other work left resident). Before the
reset, glibc is asked to return freed heap to the OS (`malloc_trim`). Where that file
cannot be written (other systems, some sandboxes) the process-lifetime peak from `getrusage` is
reported instead and `method` says so: it never goes down between combinations.

GPU: torch backends allocate through torch's caching allocator, whose peak is exact
(`max_memory_allocated`). onnxruntime and TensorRT allocate on their own, so for them the
device-wide memory in use (`mem_get_info`) after the runs, minus what was in use before the model
was loaded, is reported: it includes their arenas and workspaces, and anything else the process
allocated meanwhile.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from pathlib import Path

MB = 1e6


def _return_freed_heap() -> None:
    """Hand memory freed by earlier combinations back to the OS (glibc keeps it resident otherwise),
    so the reset peak starts from what is really in use."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class HostPeakMemory:
    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self.proc = proc
        self.resettable = self._clear_refs()
        self.method = ("VmHWM, reset per combination" if self.resettable
                       else "getrusage ru_maxrss: process-lifetime peak, not reset per combination")

    def _clear_refs(self) -> bool:
        try:
            (self.proc / "clear_refs").write_text("5")
        except OSError:
            return False
        return self._vm_hwm_kb() is not None

    def _vm_hwm_kb(self) -> int | None:
        try:
            status = (self.proc / "status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def reset(self) -> None:
        if self.resettable:
            _return_freed_heap()
            self._clear_refs()

    def peak_mb(self) -> float:
        kilobytes = self._vm_hwm_kb() if self.resettable else None
        if kilobytes is not None:
            return kilobytes * 1024 / MB
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MB if sys.platform == "darwin" else peak * 1024 / MB  # bytes on macOS, KiB on Linux


def torch_with_cuda():
    """torch, where it is installed and sees a GPU; None otherwise (GPU memory is read through torch)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch if torch.cuda.is_available() else None


def device_used_bytes() -> int | None:
    """Memory in use on the current CUDA device, by every process; None without a GPU. Asked of
    cuda-python where it is installed (what runs TensorRT engines, so an edge install needs no
    torch for it), else of torch."""
    used = _cudart_used_bytes()
    if used is not None:
        return used
    torch = torch_with_cuda()
    if torch is None:
        return None
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return total - free


def _cudart_used_bytes() -> int | None:
    try:
        from gkd_deploy.runtime.cuda_memory import import_cudart

        error, free, total = import_cudart().cudaMemGetInfo()
    except Exception:  # noqa: BLE001 - no cuda-python, no driver, no GPU: torch may still know
        return None
    return int(total) - int(free) if int(error) == 0 else None


class GpuPeakMemory:
    """`mode`: "allocator" (torch backends), "device" (others) or None (nothing on a GPU);
    `baseline_bytes`: `device_used_bytes()` before the model was loaded."""

    def __init__(self, mode: str | None, baseline_bytes: int = 0) -> None:
        self.mode = mode
        self.baseline_bytes = baseline_bytes

    def before_runs(self) -> None:
        if self.mode == "allocator":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float | None:
        if self.mode == "allocator":
            import torch

            return torch.cuda.max_memory_allocated() / MB
        if self.mode == "device":
            used = device_used_bytes()
            return None if used is None else (used - self.baseline_bytes) / MB
        return None
