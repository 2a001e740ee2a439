"""`gkd models`: the model zoo; `gkd models import`: the GKD authors' task-learning checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from gkd_deploy.cli.console import console, next_step
from gkd_deploy.models.registry import list_model_specs

app = typer.Typer(help="The model zoo; `gkd models import` for the GKD authors' checkpoints.",
                  invoke_without_command=True)


@app.callback()
def models(
    ctx: typer.Context,
    role: Annotated[Optional[str], typer.Option(help="Only models that can be a 'teacher' or a 'student'.")] = None,
) -> None:
    """List teachers and students with their timm architecture, parameters and weight source."""
    if ctx.invoked_subcommand is not None:
        return
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
                  "(.safetensors/.pth, also the GKD authors' distillation checkpoints) or [cyan]--no-pretrained[/].")


@app.command("import")
def import_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(
        help="The GKD authors' task-learning checkpoint (.pth, mmseg: backbone.* + decode_head.* Mask2Former).")],
    out: Annotated[Path, typer.Option(help="The gkd segmenter checkpoint to write (.safetensors).")],
    student: Annotated[Optional[str], typer.Option(
        help="The backbone's zoo name (default: the student whose architecture the weights fill, DeiT first).")] = None,
    classes: Annotated[Optional[str], typer.Option(
        help="Class set: cityscapes or isprs (default: the one with as many classes as the head).")] = None,
    num_heads: Annotated[Optional[int], typer.Option(
        help="Attention heads the head was trained with (not in the weights; default: the authors' 8).", min=1)] = None,
    num_points: Annotated[Optional[int], typer.Option(
        help="Deformable attention points per head and level (not in the weights; default: the authors' 4).",
        min=1)] = None,
) -> None:
    """Turn an authors' Mask2Former checkpoint into a gkd segmenter; every tensor is mapped or it is refused."""
    from gkd_deploy.models.authors_mask2former import AUTHORS_HEADS, AUTHORS_POINTS, import_authors_checkpoint

    written = import_authors_checkpoint(checkpoint, out, student=student, classes=classes,
                                        num_heads=AUTHORS_HEADS if num_heads is None else num_heads,
                                        num_points=AUTHORS_POINTS if num_points is None else num_points)
    console.print(f"segmenter: {escape(str(written))}")
    next_step(f"gkd eval {written} --targets cityscapes=PATH")
