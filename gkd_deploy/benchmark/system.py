"""What a benchmark ran on: the host, the library versions, the GPU and, on a Jetson, its state.

Latencies mean nothing without the machine and software that produced them; every report
carries this next to its rows.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass
import sys
from pathlib import Path

import gkd_deploy
from gkd_deploy.benchmark.jetson import JetsonInfo
from gkd_deploy.devices import cpu_features
from gkd_deploy.runtime.tensorrt_backend import tensorrt_available

_CPU_KEYS = ("model name", "Model", "Hardware", "cpu model")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for key in _CPU_KEYS:
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _onnxruntime_version() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    return onnxruntime.__version__


def _tensorrt_version() -> str | None:
    if not tensorrt_available():
        return None
    try:
        import tensorrt
    except ImportError:  # a broken install is as good as none
        return None
    return tensorrt.__version__


@dataclass(frozen=True)
class SystemInfo:
    cpu: str
    cores: int
    machine: str
    os: str
    python: str
    torch: str | None  # None: not installed (an edge install runs exported files without it)
    torch_threads: int | None
    cuda: str | None
    gpu: str | None
    onnxruntime: str | None
    tensorrt: str | None
    gkd_deploy: str
    host_memory: str
    jetson: dict | None
    cpu_features: tuple[str, ...] = ()  # of CPU_FEATURES (reports written before it have none)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SystemInfo":
        return cls(**{**data, "cpu_features": tuple(data.get("cpu_features", ()))})


def _distribution_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def system_info(host_memory_method: str, jetson: JetsonInfo | None) -> SystemInfo:
    """What the numbers were measured on. torch's threads, CUDA and GPU come from torch only where a
    torch backend ran (it is then loaded): a benchmark of exported files does not import it."""
    torch = sys.modules.get("torch")
    gpu = torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else None
    return SystemInfo(
        cpu=cpu_model(), cores=os.cpu_count() or 0, machine=platform.machine(), os=platform.platform(),
        python=platform.python_version(), torch=torch.__version__ if torch else _distribution_version("torch"),
        torch_threads=torch.get_num_threads() if torch else None,
        cuda=torch.version.cuda if gpu else None, gpu=gpu, onnxruntime=_onnxruntime_version(),
        tensorrt=_tensorrt_version(), gkd_deploy=gkd_deploy.__version__, host_memory=host_memory_method,
        jetson=jetson.to_dict() if jetson else None, cpu_features=cpu_features(),
    )
