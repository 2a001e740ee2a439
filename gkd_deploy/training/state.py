"""Resumable training state of one stage: weights being trained, optimizer, EMA, step.

Written atomically (temporary file + rename), so a run killed at any moment keeps the previous
state file intact. Weights that are *results* go to safetensors files with their config
(`models.checkpoint`); this file is only for continuing a stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

import torch

from gkd_deploy.errors import ModelError
from gkd_deploy.fileio import atomic_path


class Stateful(Protocol):
    """Something else a stage carries from step to step (SSKD's negative memory)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save_state(path: Path, *, stage: int, step: int, trained: torch.nn.Module, optimizer: torch.optim.Optimizer,
               ema: torch.nn.Module | None, config: dict[str, Any],
               extras: Mapping[str, Stateful] | None = None) -> None:
    state = {
        "stage": stage,
        "step": step,
        "trained": trained.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "config": config,
        "extras": {name: value.state_dict() for name, value in (extras or {}).items()},
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(path: Path, *, stage: int, config: dict[str, Any], trained: torch.nn.Module,
               optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None,
               extras: Mapping[str, Stateful] | None = None) -> int:
    """Restore into the given objects; return the step to continue from."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise ModelError(f"training state {path} cannot be read ({error.__class__.__name__}: {error}); "
                         "delete it to restart this stage") from None
    if state.get("stage") != stage:
        raise ModelError(f"{path} belongs to stage {state.get('stage')}, not stage {stage}")
    if state.get("config") != config:
        raise ModelError(f"{path} was written with other settings than this run's config.yaml; "
                         "resume with the config the run started with")
    trained.load_state_dict(state["trained"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    saved_extras = state.get("extras") or {}
    for name, value in (extras or {}).items():
        if name not in saved_extras:
            raise ModelError(f"{path} holds no {name} state; delete it to restart this stage")
        value.load_state_dict(saved_extras[name])
    return int(state["step"])
