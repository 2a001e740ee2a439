"""Which domains a command scores: the given targets, else the run's configured ones."""

from __future__ import annotations

from typing import Sequence

from gkd_deploy.data.registry import DatasetSpec, parse_dataset_list
from gkd_deploy.errors import ConfigError
from gkd_deploy.run import RunDir


def target_specs(targets: Sequence[DatasetSpec | str] | str | None, run: RunDir | None) -> list[DatasetSpec]:
    """The given targets, else the run's configured ones; ConfigError when there are none."""
    if targets:
        return parse_dataset_list(targets)
    configured = run.config().targets if run is not None else ()
    if configured:
        return parse_dataset_list(list(configured))
    raise ConfigError("no target data sets: pass --targets NAME=PATH[,NAME=PATH...] "
                      "(e.g. cityscapes=data/cityscapes-synth,acdc=data/acdc-synth)")
