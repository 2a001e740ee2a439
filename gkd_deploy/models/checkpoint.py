"""Segmenter checkpoints: safetensors weights with the architecture config in the file's metadata.

One file rebuilds its model (`load_segmenter`); writes are atomic, so a process killed while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import gkd_deploy
from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.fileio import atomic_path
from gkd_deploy.models.segmenter import Segmenter, SegmenterConfig, build_segmenter

FORMAT = "gkd-segmenter"
FORMAT_KEY = "gkd_format"
CONFIG_KEY = "gkd_config"


def save_segmenter(model: Segmenter, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config (+ `extra` JSON-able metadata, e.g. the training step) atomically."""
    path = Path(path)
    metadata = {
        FORMAT_KEY: FORMAT,
        "gkd_version": gkd_deploy.__version__,
        CONFIG_KEY: json.dumps(model.config.to_dict()),
        "gkd_extra": json.dumps(extra or {}),
    }
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{path} is not a readable safetensors checkpoint ({error})") from None


def load_segmenter(path: str | Path, map_location: str | torch.device = "cpu") -> Segmenter:
    """Rebuild a segmenter from a checkpoint written by `save_segmenter`."""
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    if metadata.get(FORMAT_KEY) != FORMAT or CONFIG_KEY not in metadata:
        raise ModelError(f"{path} is not a gkd segmenter checkpoint (no gkd config in its metadata)")
    try:
        config = SegmenterConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (json.JSONDecodeError, ConfigError) as error:
        raise ModelError(f"{path}: the stored config cannot be read ({error})") from None
    model = build_segmenter(config, pretrained=False)
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    problems = _state_mismatch(model, state)
    if problems:
        raise ModelError(f"{path} does not match the architecture its config describes ({config.encoder} + "
                         f"{config.decoder}): {problems}")
    model.load_state_dict(state)
    return model.to(map_location)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _state_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    return "; ".join(parts)
