"""Which torch device a `--device` setting names; one rule for training, evaluation and the runtime.

Below the packages that run models (evaluation, runtime, training, benchmark), so that none of them
imports another for it. torch is imported when a device is resolved, not with this module.
"""

from __future__ import annotations

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
