"""The run folder: everything needed to resume, evaluate or export a run, and no other state.

    RUN/config.yaml                       resolved configuration
    RUN/checkpoints/segmenter.safetensors the latest complete segmenter (weights + config)
    RUN/checkpoints/...                   per-stage checkpoints (training)
    RUN/metrics.json, RUN/eval.json       training metrics, evaluation results (later evaluations: eval-2.json, ...)
    RUN/export/                           exported models with their metadata
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gkd_deploy.errors import ConfigError, ModelError

SEGMENTER_CHECKPOINT = "checkpoints/segmenter.safetensors"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @classmethod
    def containing(cls, checkpoint: str | Path) -> "RunDir | None":
        """The run folder a checkpoint file lies in (RUN/checkpoints/FILE with RUN/config.yaml), else None."""
        folder = Path(checkpoint).parent
        if folder.name != "checkpoints":
            return None
        run = cls(folder.parent)
        return run if run.config_path.is_file() else None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def segmenter_checkpoint(self) -> Path:
        return self.path / SEGMENTER_CHECKPOINT

    @property
    def eval_path(self) -> Path:
        """The training's own report (the scores at the end of `gkd train`)."""
        return self.path / "eval.json"

    def new_eval_path(self) -> Path:
        """Where a later `gkd eval` of this run writes: eval.json while there is none, then
        eval-2.json, eval-3.json, ... (a report is never overwritten by another evaluation)."""
        path, number = self.eval_path, 1
        while path.exists():
            number += 1
            path = self.path / f"eval-{number}.json"
        return path

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.config_path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{self.config_path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.config_path} must hold a mapping of settings")
        return data


def resolve_checkpoint(path: str | Path) -> tuple[Path, RunDir | None]:
    """A run folder or a checkpoint file -> (checkpoint file, run folder or None)."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if not run.segmenter_checkpoint.is_file():
            raise ModelError(f"{path} holds no {SEGMENTER_CHECKPOINT}: give a run folder whose task stage has "
                             "finished, or a checkpoint file")
        return run.segmenter_checkpoint, run
    if not path.exists():
        raise ModelError(f"{path} not found: give a run folder or a .safetensors checkpoint")
    return path, RunDir.containing(path)
