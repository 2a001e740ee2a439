"""Which torch device a `--device` setting names; one rule for training, evaluation and the runtime.
And what the CPU computes natively (`cpu_features`), which decides CPU latency in int8 and bf16.

Below the packages that run models (evaluation, runtime, training, benchmark), so that none of them
imports another for it. torch is imported when a device is resolved, not with this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gkd_deploy.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(device: "str | torch.device" = "auto") -> "torch.device":
    """"auto" (a CUDA GPU when there is one, else the CPU), "cpu", "cuda" or "cuda:N"; ConfigError for
    any other name and for a GPU that is not there, before anything is loaded or written."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ConfigError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here "
                              f"(torch {torch.__version__}); use --device cpu, or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s), "
                              f"numbered from 0")
    return torch.device(name)


# The instruction sets CPU latency turns on: x86 int8 (VNNI) and bf16 (AVX-512 BF16, AMX) units,
# ARM dot products (asimddp), int8 matrix multiply (i8mm), bf16 and SVE. Without VNNI an x86
# int8 product is no faster than fp32 (README: ONNX Runtime int8 on an AVX2-only CPU, 1.02x).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                "asimd", "asimddp", "i8mm", "bf16", "sve")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """Which of `CPU_FEATURES` the first CPU lists (x86 `flags`, ARM `Features`); () where unknown."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            listed = set(value.split())
            return tuple(feature for feature in CPU_FEATURES if feature in listed)
    return ()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX, ARM bf16); None where the
    CPU's features cannot be read."""
    features = cpu_features(cpuinfo)
    if not features:
        return None
    return any(feature in features for feature in ("avx512_bf16", "amx_bf16", "bf16"))
