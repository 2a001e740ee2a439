"""Segmenter checkpoints: safetensors weights with the architecture config in the file's metadata.

One file rebuilds its model (`load_segmenter`); writes are atomic, so a process killed while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

import gkd_deploy
from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.fileio import atomic_path
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.encoder import ViTEncoder
from gkd_deploy.models.segmenter import EncoderConfig, Segmenter, SegmenterConfig, build_segmenter

FORMAT = "gkd-segmenter"
ENCODER_FORMAT = "gkd-encoder"
FORMAT_KEY = "gkd_format"
CONFIG_KEY = "gkd_config"


def _save(module: torch.nn.Module, path: Path, file_format: str, config: dict[str, Any],
          extra: dict[str, Any] | None) -> Path:
    metadata = {
        FORMAT_KEY: file_format,
        "gkd_version": gkd_deploy.__version__,
        CONFIG_KEY: json.dumps(config),
        "gkd_extra": json.dumps(extra or {}),
    }
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path


def save_segmenter(model: Segmenter, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config (+ `extra` JSON-able metadata, e.g. the training step) atomically."""
    return _save(model, Path(path), FORMAT, model.config.to_dict(), extra)


def save_encoder(encoder: ViTEncoder, path: str | Path, config: EncoderConfig,
                 extra: dict[str, Any] | None = None) -> Path:
    """A distilled student encoder (stages 1-2) with the config that rebuilds it."""
    return _save(encoder, Path(path), ENCODER_FORMAT, dataclasses.asdict(config), extra)


def load_encoder(path: str | Path) -> tuple[ViTEncoder, EncoderConfig]:
    """Rebuild an encoder saved by `save_encoder`."""
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    if metadata.get(FORMAT_KEY) != ENCODER_FORMAT:
        raise ModelError(f"{path} is not a gkd encoder checkpoint (format {metadata.get(FORMAT_KEY)!r})")
    raw = json.loads(metadata[CONFIG_KEY])
    config = EncoderConfig(**{**raw, "feature_blocks": tuple(raw["feature_blocks"]) if raw.get("feature_blocks") else None})
    encoder = create_encoder(config.encoder, pretrained=False, patch_size=config.patch_size,
                             img_size=config.img_size, feature_blocks=config.feature_blocks)
    load_weights(encoder, path)
    return encoder, config


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load a checkpoint's tensors into a module of the same architecture, or say what differs."""
    state = load_file(str(path))
    problems = _state_mismatch(module, state)
    if problems:
        config = getattr(module, "config", None)
        described = f"the architecture its config describes ({config.encoder} + {config.decoder})" if config else \
            type(module).__name__
        raise ModelError(f"{path} does not match {described}: {problems}")
    module.load_state_dict(state)


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
    load_weights(model, path)
    return model.to(map_location)


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
