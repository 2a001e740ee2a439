"""`gkd models`: the model zoo."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from gkd_deploy.cli.console import console
from gkd_deploy.models.builder import count_parameters
from gkd_deploy.models.registry import list_model_specs


def models(
    role: Annotated[Optional[str], typer.Option(help="Only models that can be a 'teacher' or a 'student'.")] = None,
) -> None:
    """List teachers and students with their timm architecture, parameters and weight source."""
    if role not in (None, "teacher", "student"):
        raise typer.BadParameter("role must be 'teacher' or 'student'", param_hint="--role")
    table = Table(title="gkd model zoo (parameters at patch size 16)")
    for column in ("name", "role", "timm architecture", "params (M)", "initialisation", "weights"):
        table.add_column(column, justify="right" if column.startswith("params") else "left")
    for spec in list_model_specs(role):
        table.add_row(spec.name, "/".join(spec.roles), spec.architecture, f"{count_parameters(spec) / 1e6:.1f}",
                      spec.init, spec.weights_source)
    console.print(table)
    console.print("Any other timm ViT: [cyan]timm:<name>[/] (e.g. timm:vit_small_patch16_224.augreg_in21k). "
                  "Offline, in gkd train: [cyan]--teacher-weights PATH[/] / [cyan]--student-weights PATH[/] "
                  "(.safetensors/.pth) or [cyan]--no-pretrained[/].")
