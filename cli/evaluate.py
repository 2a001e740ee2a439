"""`gkd eval`: mIoU of a run or checkpoint on unseen domains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from gkd_deploy.cli import options
from gkd_deploy.cli.console import console, track
from gkd_deploy.cli.tables import eval_table
from gkd_deploy.evaluation.settings import EvalSettings  # torch-free: checked before torch loads
from gkd_deploy.training.config import default_workers


def evaluate(
    model: Annotated[Path, typer.Argument(help="A run folder, a segmenter checkpoint (.safetensors), or an exported .onnx file or engine.")],
    targets: Annotated[Optional[str], typer.Option(
        help="Comma-separated NAME=PATH data sets, e.g. cityscapes=/data/cs,acdc=/data/acdc (default: the run's targets).")] = None,
    split: Annotated[str, typer.Option(help="Split to score: val or train.")] = "val",
    mode: Annotated[str, typer.Option(help="Inference: 'slide' (crop windows) or 'whole' (the full image).")] = "slide",
    crop: Annotated[Optional[int], typer.Option(help="Sliding-window size (default: the model's input size).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Sliding-window stride (default: 2/3 of the crop).")] = None,
    device: Annotated[str, typer.Option(help=options.DEVICE_HELP)] = "auto",
    workers: Annotated[Optional[int], typer.Option(help=options.WORKERS_HELP)] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Show IoU (instance models: AP) of every class.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Where to write the JSON report.")] = None,
) -> None:
    """Score a segmenter: mIoU per domain and per class, from one confusion matrix per split (an
    instance segmenter: mask AP and AP50 per domain)."""
    # Made before the evaluation (and torch) is imported: a bad option is refused at once.
    settings = EvalSettings(split=split, mode=mode, crop=crop, stride=stride, device=device,
                            workers=default_workers() if workers is None else workers, json_path=json_path)
    from gkd_deploy.evaluation.runner import evaluate_model

    outcome = evaluate_model(model, targets, settings, track=track)
    console.print(eval_table(outcome.report, per_class=per_class))
    console.print(f"checkpoint: {escape(str(outcome.checkpoint))}\nreport:     {escape(str(outcome.json_path))}")
