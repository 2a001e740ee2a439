"""Command-line options that several commands share (`gkd train`, `gkd compare`): one definition,
one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

Teacher = Annotated[Optional[str], typer.Option(
    help="Teacher from `gkd models` (e.g. dinov2-b, effnet-lite0) or timm:<name>; 'none' for no teacher.")]
Student = Annotated[Optional[str], typer.Option(help="Student from `gkd models` (e.g. vit-s) or timm:<name>.")]
Proxy = Annotated[Optional[str], typer.Option(
    help="Stage 1 unlabeled images, NAME=PATH (e.g. images=/data/imagenet/train).")]
Source = Annotated[Optional[str], typer.Option(help="Labelled source domain(s), NAME=PATH[,...] (e.g. gtav=/data/gta).")]
Targets = Annotated[Optional[str], typer.Option(help="Unseen domains scored at the end, NAME[:DOMAIN]=PATH,...")]
Config = Annotated[Optional[Path], typer.Option(help="YAML with the settings; options given here override it.")]
Preset = Annotated[Optional[str], typer.Option(
    help="'paper': the paper's lengths and batches (stage 1 100 epochs at 512, stage 2 300 epochs at 128, "
         "stage 3 40k steps at 4).")]
NoPretrained = Annotated[bool, typer.Option("--no-pretrained", help="Random initialisation, no weights download.")]
TeacherWeights = Annotated[Optional[str], typer.Option(help="Local teacher weights (.safetensors/.pth), offline.")]
StudentWeights = Annotated[Optional[str], typer.Option(help="Local student weights (.safetensors/.pth), offline.")]
Decoder = Annotated[Optional[str], typer.Option(
    help="Stage-3 decoder: mask2former (default), mask2former-edge, semfpn or linear.")]
DEVICE_HELP = "auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."
WORKERS_HELP = "Data loader worker processes (default: 4, at most this machine's CPU cores)."
Device = Annotated[Optional[str], typer.Option(help=DEVICE_HELP)]
Workers = Annotated[Optional[int], typer.Option(help=WORKERS_HELP)]


def collect_overrides(**options: Any) -> dict[str, Any]:
    """Command-line options that were given, as nested config keys (e.g. stage3__decoder ->
    stage3.decoder); `--teacher none` becomes no teacher."""
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "teacher" and isinstance(value, str) and value.lower() == "none":
            value = None
        *parents, leaf = key.split("__")
        target = overrides
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides
