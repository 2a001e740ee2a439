"""Run a list of methods (recipes) with one base config and several seeds, one run folder each.

    OUT/<method>/seed-<s>/     a normal run folder (config.yaml, checkpoints, eval.json, ...)
    OUT/compare.json|csv|png   the table, rewritten after every finished run

A run whose segmenter and eval.json exist is finished and not run again; an interrupted one is
resumed from its last checkpoint (with exactly the batches it would have seen); a folder that
holds a run with other settings is refused rather than mixed into the table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gkd_deploy.compare.report import CompareReport, RunScore
from gkd_deploy.errors import ConfigError
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.run import RunDir
from gkd_deploy.training.config import TrainConfig, deep_merge
from gkd_deploy.training.data import load_training_set
from gkd_deploy.training.loop import Callbacks
from gkd_deploy.training.recipes import RECIPES, apply_recipe, get_recipe
from gkd_deploy.training.trainer import train

log = logging.getLogger(__name__)

TEACHER = "teacher"


@dataclass(frozen=True)
class CompareSettings:
    """What to compare: recipe names, seeds, and per distillation method its `method_options`
    (e.g. {"afdcd": {"pool": 2}}) for the stages that run it."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedRun:
    method: str
    seed: int
    config: TrainConfig
    path: Path


def parse_seeds(text: str | Sequence[Any]) -> tuple[int, ...]:
    """"0,1,2" (or a list) -> (0, 1, 2); ConfigError for anything but distinct whole numbers."""
    items = [part.strip() for part in text.split(",") if part.strip()] if isinstance(text, str) else list(text)
    seeds = []
    for item in items:
        try:
            if isinstance(item, bool) or float(item) != int(float(item)):
                raise ValueError
            seeds.append(int(float(item)))
        except (TypeError, ValueError):
            raise ConfigError(f"seeds must be whole numbers (e.g. 0,1,2); got {item!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"give each seed once, at least one (e.g. --seeds 0,1,2); got {text!r}")
    return tuple(seeds)


def _ordered_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Known, distinct names; the teacher reference first (recipes that distil its predictions
    need it, and bring it in when it is missing)."""
    names = []
    for name in methods:
        get_recipe(name)  # did-you-mean for a typo
        if name in names:
            raise ConfigError(f"method '{name}' is given twice")
        names.append(name)
    if not names:
        raise ConfigError(f"give at least one method; methods: {', '.join(RECIPES)}")
    if any(RECIPES[n].needs_teacher_run for n in names) and TEACHER not in names:
        log.info("adding the teacher reference: %s distil its predictions",
                 ", ".join(n for n in names if RECIPES[n].needs_teacher_run))
        names.insert(0, TEACHER)
    return tuple(sorted(names, key=lambda n: n != TEACHER))


def _check_requirements(base: TrainConfig, methods: Sequence[str]) -> None:
    if not base.targets:
        raise ConfigError("a comparison scores the unseen domains: give --targets NAME=PATH[,...]")
    if base.teacher is None:
        needing = [m for m in methods if RECIPES[m].needs_teacher]
        if needing:
            raise ConfigError(f"{', '.join(needing)} need a teacher, and none is given: give --teacher NAME "
                              "(or compare source-only alone)")
    if not base.source:
        raise ConfigError("every method trains a decoder on the labelled source: give --source NAME=PATH")
    load_training_set(base.source, labeled=True)  # DataError when the source has no labels


def _with_method_options(config: TrainConfig, options: dict[str, dict[str, Any]]) -> TrainConfig:
    changes: dict[str, Any] = {}
    for stage in (1, 2):
        method = config.stage_settings(stage).method
        if stage in config.stages and method in options:
            changes[f"stage{stage}"] = {"method_options": dict(options[method])}
    distill = config.stage3.distill_method
    if 3 in config.stages and distill in options:
        changes["stage3"] = {"distill_options": dict(options[distill])}
    return config.merged(changes) if changes else config


def plan_compare(base: TrainConfig, settings: CompareSettings, out: str | Path) -> list[PlannedRun]:
    """Every (method, seed) run with its config and folder, checked before anything is written."""
    methods = _ordered_methods(settings.methods)
    unknown = sorted(set(settings.method_options) - {m for m in _method_names()})
    if unknown:
        raise ConfigError(f"method_options for unknown distillation method(s) {', '.join(unknown)}")
    _check_requirements(base, methods)
    out = Path(out)
    planned = []
    for seed in settings.seeds:
        seeded = dataclasses.replace(base, seed=seed)
        for method in methods:
            teacher_run = str(out / TEACHER / f"seed-{seed}") if RECIPES[method].needs_teacher_run else None
            config = _with_method_options(apply_recipe(seeded, method, teacher_run), settings.method_options)
            planned.append(PlannedRun(method, seed, config, out / method / f"seed-{seed}"))
    for run in planned:
        _check_folder(run)
    return planned


def _method_names() -> list[str]:
    from gkd_deploy.distill.methods import DISTILL_METHODS

    return list(DISTILL_METHODS)


def _check_folder(run: PlannedRun) -> None:
    folder = RunDir(run.path)
    if folder.config_path.is_file():
        stored = folder.config(validate=True)
        if stored != run.config.with_absolute_paths():  # a run folder stores its paths absolute
            raise ConfigError(f"{run.path} holds a {run.method} run with other settings than this comparison's; "
                              "choose another --out, or delete that folder to run it again")


def _finished(run: PlannedRun) -> bool:
    folder = RunDir(run.path)
    return folder.segmenter_checkpoint.is_file() and folder.eval_path.is_file()


def _score(run: PlannedRun) -> RunScore:
    report = json.loads(RunDir(run.path).eval_path.read_text())
    domains = {d["domain"]: (math.nan if d["miou"] is None else float(d["miou"])) for d in report["domains"]}
    return RunScore(run.method, run.seed, str(run.path), domains)


def run_compare(
    base: TrainConfig,
    settings: CompareSettings,
    out: str | Path,
    *,
    track: Track = no_progress,
    make_callbacks: Callable[[], Callbacks] | None = None,
    on_run: Callable[[PlannedRun, int, int, str], None] | None = None,
    plot: bool = True,
) -> CompareReport:
    """Train (or resume, or skip) every planned run and return the table, also written to OUT.

    `on_run(run, index, total, status)` is told before each run: "run", "resume" or "done".
    """
    out = Path(out)
    planned = plan_compare(base, settings, out)
    out.mkdir(parents=True, exist_ok=True)
    scores: list[RunScore] = []
    methods = tuple(dict.fromkeys(run.method for run in planned))
    for index, run in enumerate(planned):
        status = "done" if _finished(run) else "resume" if RunDir(run.path).config_path.is_file() else "run"
        if on_run is not None:
            on_run(run, index, len(planned), status)
        if status != "done":
            callbacks = make_callbacks() if make_callbacks is not None else None
            try:
                train(None if status == "resume" else run.config, run.path, resume=status == "resume",
                      callbacks=callbacks, track=track)
            finally:
                close = getattr(callbacks, "close", None)
                if close is not None:
                    close()
        scores.append(_score(run))
        report = _report(methods, scores, base, settings)
        _write(report, out, plot and index == len(planned) - 1)
    return report


def _report(methods: tuple[str, ...], scores: list[RunScore], base: TrainConfig,
            settings: CompareSettings) -> CompareReport:
    domains = tuple(dict.fromkeys(d for score in scores for d in score.domains))
    summary = {"teacher": base.teacher, "student": base.student, "seeds": list(settings.seeds),
               "stage_steps": {f"stage{s}": base.stage_settings(s).steps for s in (1, 2, 3)},
               "proxy": [_entry(e) for e in base.proxy], "source": [_entry(e) for e in base.source],
               "targets": [_entry(e) for e in base.targets]}
    return CompareReport(methods=methods, domains=domains, scores=tuple(scores), settings=summary)


def _entry(entry: Any) -> Any:
    return entry if isinstance(entry, str) else dict(entry)


def _write(report: CompareReport, out: Path, plot: bool) -> None:
    report.write_json(out / "compare.json")
    report.write_csv(out / "compare.csv")
    if plot:
        from gkd_deploy.compare.plot import write_compare_plot

        write_compare_plot(report, out / "compare.png")


def load_base_config(path: str | None, overrides: dict[str, Any], preset: str | None) -> tuple[TrainConfig, dict]:
    """The base training config and the `compare:` section of a YAML file (methods, seeds,
    method_options), each overridable from the command line."""
    from gkd_deploy.training.config import PRESETS, read_yaml_mapping

    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; available: {', '.join(PRESETS)}")
        data = deep_merge(data, PRESETS[preset])
    compare_section: dict[str, Any] = {}
    if path is not None:
        file_data = read_yaml_mapping(path)
        compare_section = file_data.pop("compare", None) or {}
        if not isinstance(compare_section, dict) or set(compare_section) - {"methods", "seeds", "method_options"}:
            raise ConfigError(f"{path}: the compare section takes methods, seeds and method_options")
        data = deep_merge(data, file_data)
    # Which stages run is each method's to say; the base runs stage 3 alone, which asks only for
    # what every method needs (a labelled source).
    merged = deep_merge(data, overrides)
    merged["stages"] = [3]
    return TrainConfig.from_dict(merged), compare_section
