"""Where a backbone's weights come from: the Hugging Face hub through timm, a local file, or none.

timm does the loading in all cases, so its checkpoint filters apply: a patch-14 state dict loaded
into a model created with `patch_size=16` gets its patch-embedding kernel resampled and its position
embedding interpolated. Before a hub download we check, in seconds, that the file is cached or the
hub is reachable, because an offline machine would otherwise wait on retries before failing.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch

from gkd_deploy.errors import WeightsError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_PROBE_TIMEOUT_S = 3.0

# Classes a .pth file may hold besides tensors and containers. The GKD authors' distillation
# checkpoints store their command line as an `argparse.Namespace` (`'args': args`, beside
# `'model'`); a Namespace is rebuilt by setting attributes from a dict of the same allowed types,
# so it runs no code. Everything else outside torch's weights-only set is refused.
SAFE_PICKLED_CLASSES = (argparse.Namespace,)
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_torch_file(path: Path, *, mmap: bool = False) -> Any:
    """`torch.load` with `weights_only=True` (no pickled code runs); WeightsError in one line for
    a file that holds other pickled objects or is not a torch file at all."""
    try:
        with torch.serialization.safe_globals(list(SAFE_PICKLED_CLASSES)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # unpickling and format errors come in many classes
        unsupported = _UNSUPPORTED_GLOBAL.search(str(error))
        if unsupported:
            raise WeightsError(
                f"cannot read weights from {path}: it holds a pickled Python object ({unsupported.group(1)}), "
                "and gkd-deploy unpickles tensors and plain containers only (no code from a weights file runs); "
                "where you trust the file, save its state dict alone (torch.save(checkpoint['state_dict'], "
                "'weights.pth')) or convert it to .safetensors") from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(f"cannot read weights from {path}: {error.__class__.__name__}: {first_line}") from error


def check_weights_file(path: Path) -> Path:
    """The path, checked to exist with a known suffix; WeightsError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; give the path of a .safetensors or .pth file")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WeightsError(f"weights file {path} has suffix '{path.suffix}'; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


def check_weights_readable(path: Path) -> Path:
    """`check_weights_file`, then the file's index read (not its tensors): WeightsError for a file
    that is damaged, empty or not a weights file at all, in milliseconds, before a run starts."""
    path = check_weights_file(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        else:
            load_torch_file(path, mmap=True)
    except WeightsError:
        raise
    except Exception as error:  # unpickling and format errors come in many classes
        raise WeightsError(f"cannot read weights from {path}: {error.__class__.__name__}: {error}") from error
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or .pth file (tensors only, unwrapped from "state_dict"/"model":
    mmseg's and the GKD authors' checkpoints); WeightsError, never a library's own exception, for a
    file that is not one (.pth files are read with `weights_only=True`: no pickled code runs)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        state: Any = load_torch_file(path)
    else:
        try:
            from safetensors.torch import load_file

            state = load_file(str(path))
        except Exception as error:  # format errors come in several classes
            raise WeightsError(f"cannot read weights from {path}: {error.__class__.__name__}: {error}") from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def ensure_hub_weights_available(model_label: str, timm_name: str) -> None:
    """Raise WeightsError quickly when pretrained weights can be neither found in the cache nor downloaded."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    repo_id = cfg.hf_hub_id if cfg is not None else None
    if not repo_id:
        # Weights hosted elsewhere (a URL in timm's table): timm downloads them itself.
        return
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return
    fix = (f"give a local file with --weights PATH (the hub file is {repo_id}/model.safetensors), "
           f"or use --no-pretrained for random initialisation")
    ensure_hub_reachable(f"pretrained weights for {model_label}", fix)


def ensure_hub_reachable(what: str, fix: str) -> None:
    """Raise WeightsError in seconds, with `fix` in its message, when `what` (not in the local cache)
    cannot be downloaded: HF_HUB_OFFLINE is set or the hub's host does not answer. Without this an
    offline machine waits through the hub client's retries (half a minute) before failing."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise WeightsError(f"{what} are not in the local cache and HF_HUB_OFFLINE is set: {fix}")
    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        raise WeightsError(
            f"cannot download {what}: {constants.ENDPOINT} is unreachable "
            f"({error.__class__.__name__}: {error}); {fix}"
        ) from None
