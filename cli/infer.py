"""`gkd infer`: a video, images, a camera or a stream through a model (semantic or instance), to an
annotated video."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterable, Iterator, Optional, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from rich.markup import escape

from gkd_deploy.cli import options
from gkd_deploy.cli.console import console, next_step
from gkd_deploy.size import Size
from gkd_deploy.infer import DEFAULT_SCORE_THRESHOLD, MODES

if TYPE_CHECKING:
    from gkd_deploy.infer import InferResult, InferStart

T = TypeVar("T")


def print_start(start: InferStart) -> None:
    """What `gkd infer` opened, and its notes: before the work, so that a user can stop and fix them
    (e.g. export at the frames' shape)."""
    info = start.model
    console.print(f"model: {escape(str(info.source))} ({info.backend}, {info.precision}"
                  + (f", {info.input_size[1]}x{info.input_size[0]}" if info.input_size else "") + ")")
    console.print(f"source: {escape(start.source)} ({start.kind}, {start.fps:g} fps)")
    for note in start.notes:
        console.print(Text.assemble(("note:", "dim"), " ", str(note)))


def track_frames(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """The library's `track` for frames: a progress bar with the live frame rate; without a known
    frame count (a camera, a stream) it counts up."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task(description, total=total, fps="")
        began = time.perf_counter()
        for count, item in enumerate(items, 1):
            yield item
            fps = count / max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=count, fps=f"{fps:.1f} fps")


def infer(
    source: Annotated[str, typer.Argument(help="A video file, an image, a folder or glob of images, a camera index (0) or a stream URL (rtsp://...).")],
    model: Annotated[Path, typer.Option(help="A run folder, checkpoint (.safetensors), .onnx file or TensorRT engine.")],
    out: Annotated[Optional[Path], typer.Option(help="Annotated output: a video (.mp4, .avi) or a folder of PNGs (default: <name>-seg.mp4 for a video, <name>-seg/ for images, none for a camera or stream).")] = None,
    masks: Annotated[Optional[Path], typer.Option(help="Folder for colour masks, one PNG per frame.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Folder for raw label maps (train ids, 8-bit PNG), one per frame; for an instance model Cityscapes instance ids (16-bit PNG, label id x 1000 + instance index) and a JSON of the instances (class, score, box).")] = None,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Write the frame and its overlay side by side.")] = False,
    alpha: Annotated[float, typer.Option(help="Weight of the colour mask in the overlay (0-1).")] = 0.5,
    legend: Annotated[bool, typer.Option("--legend/--no-legend", help="Draw the key of the classes in view and a caption naming the model on the annotated frames.")] = True,
    show: Annotated[bool, typer.Option("--show", help="Show the annotated frames in a window (q or Esc stops).")] = False,
    mode: Annotated[str, typer.Option(help=f"How frames fit the model: {' or '.join(MODES)} (sliding windows, as gkd eval scores).")] = "resize",
    size: Annotated[Optional[str], typer.Option(help="Model input WIDTHxHEIGHT for a PyTorch model (exported models have their own).")] = None,
    batch: Annotated[int, typer.Option(help="Frames per model call (taken from what is already decoded).")] = 1,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Output frame rate (default: the source's; 10 for images).")] = None,
    device: Annotated[str, typer.Option(help=options.DEVICE_HELP)] = "auto",
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write a JSON summary (frames, FPS, timings).")] = None,
    score_threshold: Annotated[float, typer.Option(help="Instance models: draw and write only the instances scoring at least this (0-1).")] = DEFAULT_SCORE_THRESHOLD,
) -> None:
    """Segment every frame; decoding, inference and encoding overlap; no frame of a file is dropped.
    An instance model draws each instance in its own colour, tagged with its class and score."""
    from gkd_deploy.infer import InferSettings, infer as run_infer

    settings = InferSettings(out=out, masks=masks, labels=labels, side_by_side=side_by_side, alpha=alpha, legend=legend,
                             show=show, mode=mode, size=Size.parse(size, "--size").hw if size else None, batch=batch,
                             max_frames=max_frames, fps=fps, device=device, json_path=json_path,
                             score_threshold=score_threshold)
    result = run_infer(source, model, settings, track=track_frames, started=print_start)
    print_summary(result)
    if json_path is not None:
        console.print(f"summary: {escape(str(json_path))}")
    if result.stats.interrupted:
        raise typer.Exit(code=130)  # the shell's code for Ctrl-C; the outputs are complete files
    next_step(f"gkd benchmark --model {model}")


def print_summary(result: InferResult) -> None:
    stats = result.stats
    for warning in result.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", str(warning)))
    if stats.interrupted:
        console.print(f"[yellow]interrupted after {stats.processed} frames[/]")
    console.print(f"{stats.processed} frames in {stats.seconds:.2f} s: [bold]{stats.fps:.1f} fps[/] end to end, "
                  f"model alone {stats.model_fps:.1f} fps (decode {stats.decode_seconds:.2f} s, "
                  f"model {stats.model_seconds:.2f} s, render+write {stats.write_seconds:.2f} s)")
    for path in stats.outputs:
        console.print(f"wrote {escape(str(path))}")
