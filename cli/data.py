"""`gkd data ...`: data set utilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from gkd_deploy.cli.console import console, next_step, track
from gkd_deploy.size import Size

app = typer.Typer(help="Data set utilities: the built-in synthetic domains.", no_args_is_help=True)


@app.command("synthetic")
def synthetic(
    out: Annotated[Path, typer.Argument(help="Folder to write cityscapes-synth/ and acdc-synth/ into.")],
    train: Annotated[int, typer.Option(help="Source-style training images.")] = 200,
    val: Annotated[int, typer.Option(help="Source-style validation images.")] = 50,
    target: Annotated[int, typer.Option(help="Validation images per target condition (fog, night, rain, snow).")] = 50,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = "512x256",
    seed: Annotated[int, typer.Option(help="Scenes are a pure function of the seed.")] = 0,
    video: Annotated[bool, typer.Option("--video", help="Also write a short driving clip (mp4) in a target style.")] = False,
    video_style: Annotated[str, typer.Option(help="Style of the clip: fog, night, rain or snow.")] = "fog",
    proxy: Annotated[int, typer.Option(help="Unlabeled proxy images for stage 1 (other scenes, random camera "
                                            "looks, no weather) in proxy-synth/.")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).")] = None,
) -> None:
    """Write the built-in synthetic street scenes in the Cityscapes and ACDC layouts."""
    from gkd_deploy.data.synthetic import write_synthetic

    summary = write_synthetic(out, train=train, val=val, target=target, size=Size.parse(size, "--size").wh, seed=seed,
                              video=video, video_style=video_style, proxy=proxy, workers=workers, track=track)
    console.print(f"source (Cityscapes layout): {escape(str(summary.cityscapes))}")
    console.print(f"targets (ACDC layout):      {escape(str(summary.acdc))}")
    if summary.proxy is not None:
        console.print(f"proxy (images):             {escape(str(summary.proxy))}")
    if summary.video is not None:
        console.print(f"video:                      {escape(str(summary.video))}")
    next_step(f"gkd eval CHECKPOINT --targets cityscapes={summary.cityscapes},acdc={summary.acdc}")
