"""Segmenter checkpoints: safetensors weights with the architecture config in the file's metadata.

One file rebuilds its model: `load_segmenter` (semantic), `load_instance_segmenter` (instance), or
`load_model` for whichever the file holds (its format key says which); writes are atomic, so a process killed while
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
from gkd_deploy.models.instance_segmenter import InstanceSegmenter, build_instance_segmenter
from gkd_deploy.models.config import EncoderConfig, InstanceSegmenterConfig, SegmenterConfig
from gkd_deploy.models.segmenter import Segmenter, build_segmenter

FORMAT = "gkd-segmenter"
INSTANCE_FORMAT = "gkd-instance-segmenter"
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


def save_instance_segmenter(model: InstanceSegmenter, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """An instance segmenter's weights (the training-only projection head included) + config, atomically."""
    return _save(model, Path(path), INSTANCE_FORMAT, model.config.to_dict(), extra)


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
        described = f"the architecture its config describes ({config.architecture})" if config else \
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


# What each checkpoint format holds and how it is rebuilt: (what it is called, config class, builder).
_MODEL_FORMATS = {
    FORMAT: ("a semantic segmenter", SegmenterConfig, build_segmenter),
    INSTANCE_FORMAT: ("an instance segmenter", InstanceSegmenterConfig, build_instance_segmenter),
}
# Where each is loaded, for the error that names the other.
_LOADERS = {FORMAT: "load_segmenter (gkd eval / export take either)",
            INSTANCE_FORMAT: "load_instance_segmenter (gkd eval / export take either)"}


def checkpoint_format(path: str | Path) -> str:
    """The gkd format a checkpoint declares ("gkd-segmenter", "gkd-instance-segmenter", "gkd-encoder", or "")."""
    return read_checkpoint_metadata(path).get(FORMAT_KEY, "")


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               expected: str | None = None) -> Segmenter | InstanceSegmenter:
    """Rebuild the segmenter (semantic or instance) a checkpoint holds; `expected` (a format) refuses the other."""
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    file_format = metadata.get(FORMAT_KEY)
    if file_format not in _MODEL_FORMATS or CONFIG_KEY not in metadata:
        raise ModelError(f"{path} is not a gkd segmenter checkpoint (no gkd config in its metadata)")
    what, config_class, build = _MODEL_FORMATS[file_format]
    if expected is not None and file_format != expected:
        raise ModelError(f"{path} holds {what}, not {_MODEL_FORMATS[expected][0]}; load it with "
                         f"{_LOADERS[file_format]}")
    try:
        config = config_class.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (json.JSONDecodeError, ConfigError) as error:
        raise ModelError(f"{path}: the stored config cannot be read ({error})") from None
    model = build(config, pretrained=False)
    load_weights(model, path)
    return model.to(map_location)


def load_segmenter(path: str | Path, map_location: str | torch.device = "cpu") -> Segmenter:
    """Rebuild a semantic segmenter from a checkpoint written by `save_segmenter`."""
    return load_model(path, map_location, expected=FORMAT)


def load_instance_segmenter(path: str | Path, map_location: str | torch.device = "cpu") -> InstanceSegmenter:
    """Rebuild an instance segmenter from a checkpoint written by `save_instance_segmenter`."""
    return load_model(path, map_location, expected=INSTANCE_FORMAT)


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
