"""`gkd models`: the model zoo."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from gkd_deploy.cli.console import console
from gkd_deploy.models.registry import list_model_specs


def models(
    role: Annotated[Optional[str], typer.Option(help="Only models that can be a 'teacher' or a 'student'.")] = None,
) -> None:
    """List teachers and students with their timm architecture, parameters and weight source."""
    if role not in (None, "teacher", "student"):
        raise typer.BadParameter("role must be 'teacher' or 'student'", param_hint="--role")
    from gkd_deploy.models.builder import count_parameters

    table = Table(title="gkd model zoo (parameters at patch size 16)")
    # The names are what users type: never cut or wrapped. Architecture, initialisation and weight
    # source share one column, a line each, so that the table reads at 80 columns.
    table.add_column("name", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("params (M)", justify="right", no_wrap=True)
    table.add_column("timm architecture / initialisation / weights", overflow="fold")
    for spec in list_model_specs(role):
        table.add_row(spec.name, "/".join(spec.roles), f"{count_parameters(spec) / 1e6:.1f}",
                      "\n".join((spec.architecture, spec.init, spec.weights_source)))
    console.print(table)
    console.print("Any other timm ViT: [cyan]timm:<name>[/] (e.g. timm:vit_small_patch16_224.augreg_in21k). "
                  "Offline, in gkd train: [cyan]--teacher-weights PATH[/] / [cyan]--student-weights PATH[/] "
                  "(.safetensors/.pth) or [cyan]--no-pretrained[/].")
