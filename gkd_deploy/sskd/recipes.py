"""The SSKD recipe and its stage ablations (the paper's Table 3) as named phase subsets.

| recipe | phases | row |
|---|---|---|
| sskd | finetune, selftrain, transfer, refine | full |
| sskd-no-refinement | finetune, selftrain, transfer | + distillation (no refinement) |
| sskd-no-adaptation | finetune, transfer, refine | without teacher adaptation |
| supervised | refine, for transfer + refine steps | the student on the labels alone |

"Without teacher adaptation" is the paper's zero-shot teacher; the built-in teacher knows nothing
before it is trained, so here it is the teacher fine-tuned on the labels without the pseudo-label
self-training (with the grounded-sam teacher: zero-shot, the phases transfer and refine). The
supervised baseline gets as many steps as the distilled student's two phases together, so both
students see the labels for the same budget of updates.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

from gkd_deploy.errors import ConfigError
from gkd_deploy.sskd.config import InstanceTrainConfig, PHASES


def _phases(*phases: str) -> Callable[[InstanceTrainConfig], dict[str, Any]]:
    def overrides(config: InstanceTrainConfig) -> dict[str, Any]:
        chosen = phases
        if config.teacher_kind == "grounded-sam":
            chosen = tuple(p for p in phases if p not in ("finetune", "selftrain"))
        return {"phases": list(chosen)}
    return overrides


def _supervised(config: InstanceTrainConfig) -> dict[str, Any]:
    return {"phases": ["refine"], "refine": {"steps": config.transfer.steps + config.refine.steps}}


RECIPES: dict[str, Callable[[InstanceTrainConfig], dict[str, Any]]] = {
    "sskd": _phases(*PHASES),
    "sskd-no-refinement": _phases("finetune", "selftrain", "transfer"),
    "sskd-no-adaptation": _phases("finetune", "transfer", "refine"),
    "supervised": _supervised,
}


def apply_instance_recipe(config: InstanceTrainConfig, name: str) -> InstanceTrainConfig:
    """`config` with recipe `name`'s phases (validated); the recipe's name is recorded in the config."""
    overrides = RECIPES.get(name)
    if overrides is None:
        close = difflib.get_close_matches(name, RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown instance recipe '{name}'.{hint} Recipes: {', '.join(RECIPES)}")
    return config.merged({**overrides(config), "recipe": name})


def load_instance_recipe(path: str | None, overrides: dict[str, Any], recipe: str = "sskd") -> InstanceTrainConfig:
    """`gkd train --task instance`: defaults <- the YAML file <- command-line options, then the recipe."""
    from gkd_deploy.sskd.config import load_instance_config

    return apply_instance_recipe(load_instance_config(path, overrides), recipe)
