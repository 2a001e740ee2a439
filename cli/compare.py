"""`gkd compare`: GKD and the paper's baselines with one teacher, student, data, budget and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from gkd_deploy.cli.console import console, fmt, next_step, track
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.cli import options
from gkd_deploy.cli.options import collect_overrides
from gkd_deploy.errors import ConfigError
from gkd_deploy.training.recipes import RECIPES


def compare_table(report) -> Table:
    """`report`: a `CompareReport`."""
    from gkd_deploy.compare.report import AVERAGE

    """Methods x target domains + average (mean +- std over seeds), and the share of the teacher's average."""
    seeds = len({score.seed for score in report.scores})
    table = Table(title=f"mIoU (%) on the target domains, mean ± std over {seeds} seed{'s' * (seeds != 1)}")
    table.add_column("method")
    for domain in report.domains:
        table.add_column(domain, justify="right")
    table.add_column(AVERAGE, justify="right", style="bold")
    with_teacher = "teacher" in report.methods
    if with_teacher:
        table.add_column("/ teacher", justify="right")
    best = report.best()
    for method in report.methods:
        cells = [report.cell(method, domain).text() for domain in (*report.domains, AVERAGE)]
        extra = [fmt(report.share_of_teacher(method), 2)] if with_teacher else []
        table.add_row(f"[bold]{method}[/]" if method == best else method, *cells, *extra)
    return table


def _methods(text: str | None, section: dict) -> tuple[str, ...]:
    methods = text or section.get("methods")
    if not methods:
        raise ConfigError(f"give the methods to compare with --methods A,B,... (available: {', '.join(RECIPES)})")
    parts = methods.split(",") if isinstance(methods, str) else methods
    return tuple(str(part).strip() for part in parts if str(part).strip())


def compare(
    methods: Annotated[Optional[str], typer.Option(help=f"Comma-separated methods: {', '.join(RECIPES)}.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for one run per method and seed, and the table.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds, e.g. 0,1,2 (default 0).")] = None,
    teacher: options.Teacher = None,
    student: options.Student = None,
    proxy: options.Proxy = None,
    source: options.Source = None,
    targets: options.Targets = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML with the training settings (and a compare: section "
                                                        "with methods, seeds, method_options).")] = None,
    preset: options.Preset = None,
    no_pretrained: options.NoPretrained = False,
    teacher_weights: options.TeacherWeights = None,
    student_weights: options.StudentWeights = None,
    decoder: options.Decoder = None,
    device: options.Device = None,
    workers: options.Workers = None,
) -> None:
    """Train every method with the same teacher, student, data, budget and seeds (one run folder
    each; finished runs are not run again) and print the paper's Table 1 for the target domains."""
    from gkd_deploy.compare import CompareSettings, run_compare
    from gkd_deploy.compare.runner import load_base_config, parse_seeds

    if out is None:
        raise typer.BadParameter("give the folder for the runs and the table with --out", param_hint="--out")
    overrides = collect_overrides(
        teacher=teacher, student=student, proxy=proxy, source=source, targets=targets,
        pretrained=False if no_pretrained else None, teacher_weights=teacher_weights, student_weights=student_weights,
        stage3__decoder=decoder, device=device, workers=workers)
    base, section = load_base_config(str(config) if config else None, overrides, preset)
    settings = CompareSettings(methods=_methods(methods, section),
                               seeds=parse_seeds(seeds if seeds is not None else section.get("seeds", "0")),
                               method_options=dict(section.get("method_options") or {}))

    def announce(run, index, total, status):
        what = {"run": "training", "resume": "resuming", "done": "finished earlier, kept"}[status]
        console.print(f"[bold]{index + 1}/{total}[/] {run.method} seed {run.seed}: {what} ({escape(str(run.path))})")

    report = run_compare(base, settings, out, track=track, make_callbacks=TrainingDisplay, on_run=announce)
    console.print(compare_table(report))
    tables = [out / name for name in ("compare.json", "compare.csv", "compare.png") if (out / name).is_file()]
    console.print(f"table: {escape(', '.join(str(path) for path in tables))}")
    next_step(f"gkd eval {out / report.methods[-1] / f'seed-{settings.seeds[0]}'} --per-class")
