"""Recipes: GKD and the paper's baselines and ablations as named changes to one training config.

A recipe keeps the teacher, student, data, lengths and seed of the config it is applied to and
sets only what defines the method: which stages run, the distillation method of stages 1-2, and
how stage 3 treats the encoder. So every recipe of a `gkd compare` run has the same budget.

| recipe | stages | what changes | paper |
|---|---|---|---|
| teacher | 3 | the frozen teacher as the encoder | Table 1 "Tea" rows |
| source-only | 3 | the student trained on the source labels alone | Table 1 "Stu" rows |
| one-stage-kd | 3 | task loss + projected-feature MSE, encoder trained (eq. 3) | Table 4 MSE dagger, Table 1 Vanilla KD |
| one-stage-qsd | 3 | task loss + QSD, encoder trained | Table 4 QSD dagger |
| two-stage-mse | 1*, 2, 3 | GKD's terms with projection heads, encoder frozen | Table 4 MSE |
| fitnets, cwd, vitkd, afdcd, proteus | 1*, 2, 3 | that method distils, encoder frozen | Tables 1 and 4 |
| g2sd | 1*, 2, 3 | generic distillation, then the encoder trained with the teacher reference's predictions as soft targets (specific distillation) | Table 1 |
| gkd | 1*, 2, 3 | QSD, encoder frozen (the paper's method) | |
| gkd-unfrozen | 1*, 2, 3 | QSD, encoder trained in stage 3 | Table 5 "Frozen" off |
| gkd-no-stage1 | 2, 3 | QSD on the source only | Table 5 without task-agnostic distillation |

(*) stage 1 runs where the config has a proxy set. Recipes that train the encoder in stage 3 use
the config's `stage3.encoder_lr`, or 1/10 of the decoder's rate where it is 0 (the paper: 1e-5
for the backbone, 1e-4 for the decoder).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from gkd_deploy.errors import ConfigError
from gkd_deploy.training.config import TrainConfig

ENCODER_LR_RATIO = 0.1  # the paper's unfrozen setting: backbone 1e-5, decoder 1e-4


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    overrides: Callable[[TrainConfig], dict[str, Any]]
    needs_teacher: bool = True
    needs_teacher_run: bool = False  # uses the `teacher` recipe's segmenter (G2SD's specific distillation)


def encoder_lr(config: TrainConfig) -> float:
    return config.stage3.encoder_lr or config.stage3.lr * ENCODER_LR_RATIO


def _distill_stages(config: TrainConfig) -> list[int]:
    return [1, 2] if config.proxy else [2]


def _plain_stage3(**settings: Any) -> dict[str, Any]:
    """Stage-3 settings with every baseline switch off, then `settings`."""
    return {"encoder": "student", "encoder_lr": 0.0, "distill_method": None, "logit_teacher": None, **settings}


def _distilled(method: str, *, stage1: bool = True, **stage3: Any) -> Callable[[TrainConfig], dict[str, Any]]:
    def overrides(config: TrainConfig) -> dict[str, Any]:
        stages = _distill_stages(config) if stage1 else [2]
        changes: dict[str, Any] = {"stages": stages + [3]}
        for stage in stages:
            # A method's options belong to the method they were written for.
            same = method == config.stage_settings(stage).method
            changes[f"stage{stage}"] = {"method": method} if same else {"method": method, "method_options": {}}
        changes["stage3"] = _stage3(config, stage3)
        return changes
    return overrides


def _stage3(config: TrainConfig, settings: dict[str, Any]) -> dict[str, Any]:
    settings = dict(settings)
    if settings.pop("train_encoder", False):
        settings["encoder_lr"] = encoder_lr(config)
    return _plain_stage3(**settings)


def _task_only(**stage3: Any) -> Callable[[TrainConfig], dict[str, Any]]:
    return lambda config: {"stages": [3], "stage3": _stage3(config, stage3)}


_RECIPES = (
    Recipe("teacher", "the frozen teacher + the decoder (teacher reference)", _task_only(encoder="teacher")),
    Recipe("source-only", "the student supervised on the source alone, encoder trained",
           _task_only(train_encoder=True), needs_teacher=False),
    Recipe("one-stage-kd", "task loss + projected-feature MSE at once, encoder trained (eq. 3)",
           _task_only(train_encoder=True, distill_method="fitnets")),
    Recipe("one-stage-qsd", "task loss + QSD at once, encoder trained",
           _task_only(train_encoder=True, distill_method="qsd")),
    Recipe("two-stage-mse", "GKD's schedule and terms with projection heads instead of QSD", _distilled("mse")),
    Recipe("fitnets", "vanilla KD (projected final tokens, MSE) in GKD's schedule", _distilled("fitnets")),
    Recipe("cwd", "channel-wise distillation in GKD's schedule", _distilled("cwd")),
    Recipe("vitkd", "ViTKD in GKD's schedule", _distilled("vitkd")),
    Recipe("afdcd", "Af-DCD in GKD's schedule", _distilled("afdcd")),
    Recipe("proteus", "Proteus' three projection terms in GKD's schedule", _distilled("proteus")),
    Recipe("g2sd", "G2SD: generic distillation, then specific distillation from the teacher reference",
           _distilled("g2sd", train_encoder=True), needs_teacher_run=True),
    Recipe("gkd", "GKD: QSD in stages 1-2, frozen encoder in stage 3", _distilled("qsd")),
    Recipe("gkd-unfrozen", "GKD with the encoder trained in stage 3", _distilled("qsd", train_encoder=True)),
    Recipe("gkd-no-stage1", "GKD without task-agnostic distillation (stage 2 only)", _distilled("qsd", stage1=False)),
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in _RECIPES}


def get_recipe(name: str) -> Recipe:
    recipe = RECIPES.get(name)
    if recipe is None:
        close = difflib.get_close_matches(name, RECIPES, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown method '{name}'.{hint} Methods: {', '.join(RECIPES)}")
    return recipe


def apply_recipe(config: TrainConfig, name: str, teacher_run: str | None = None) -> TrainConfig:
    """`config` changed as recipe `name` says (validated). `teacher_run` is the teacher reference's
    run folder, for recipes that distil its predictions."""
    recipe = get_recipe(name)
    overrides = recipe.overrides(config)
    teacher_run = teacher_run or config.stage3.logit_teacher
    if recipe.needs_teacher_run:
        if teacher_run is None:
            raise ConfigError(f"'{name}' distils the teacher reference's predictions in stage 3: run the 'teacher' "
                              "method first (gkd compare does) and give its run folder")
        overrides["stage3"]["logit_teacher"] = str(teacher_run)
    return config.merged(overrides)
