"""`gkd export`: a run or checkpoint -> ONNX (and TensorRT) files per precision, each checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text
from rich.markup import escape

from gkd_deploy.cli.console import console, next_step
from gkd_deploy.errors import ConfigError
from gkd_deploy.size import Size


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """"MIN,OPT,MAX" -> three integers; ConfigError for anything else."""
    parts = _list(text)
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ConfigError(f"--batch takes MIN,OPT,MAX (three whole numbers, e.g. 1,1,8), got {text!r}")
    low, opt, high = (int(part) for part in parts)
    return low, opt, high


def export(
    model: Annotated[Path, typer.Argument(help="A run folder or a segmenter checkpoint (.safetensors).")],
    format: Annotated[str, typer.Option("--format", help="onnx, trt, or both (comma-separated).")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32, fp16, int8, comma-separated (e.g. fp32,fp16,int8).")] = "fp32",
    calib: Annotated[Optional[str], typer.Option(help="Calibration data NAME=PATH,... (default: the run's source domain).")] = None,
    calib_count: Annotated[int, typer.Option(help="Calibration images (300 or more recommended).")] = 512,
    calib_method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    target: Annotated[str, typer.Option(help="The runtime the files are for: tensorrt (int8 Q/DQ by TensorRT's fusion rules, as NVIDIA ModelOpt; deformable attention with gathers) or onnxruntime (int8 where its CPU kernels are; GridSample).")] = "tensorrt",
    remainder: Annotated[Optional[str], typer.Option(help="Precision of what int8 does not cover: fp16 or fp32 (default: fp16 for tensorrt, fp32 for onnxruntime).")] = None,
    quantize_sensitive: Annotated[bool, typer.Option("--quantize-sensitive", help="On top of --target's placement, also quantize the inputs of LayerNorm, Softmax, GELU, InstanceNorm and residual adds (less accurate).")] = False,
    size: Annotated[Optional[str], typer.Option(help="Input WIDTHxHEIGHT (default: the model's training size).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13-20).")] = 17,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the files (default: RUN/export).")] = None,
    workspace: Annotated[float, typer.Option(help="TensorRT builder workspace in GiB.")] = 4.0,
    opt_level: Annotated[int, typer.Option(help="TensorRT builder optimisation level 0-5.")] = 3,
    timing_cache: Annotated[Optional[str], typer.Option(help="TensorRT timing cache file (read and updated).")] = None,
    batch: Annotated[str, typer.Option(help="TensorRT batch range MIN,OPT,MAX.")] = "1,1,8",
    outputs: Annotated[str, typer.Option(help="What the files return: both (scores and uint8 labels), scores, or labels (the argmax in the graph: H x W bytes per image to copy back).")] = "both",
) -> None:
    """Export the frozen encoder and decoder as one graph, fixed input size, dynamic batch; each
    file carries its metadata and is checked against PyTorch before it counts."""
    from gkd_deploy.exporters.pipeline import ExportSettings, export_model
    from gkd_deploy.exporters.tensorrt import EngineOptions

    input_size = Size.parse(size, "--size").hw if size else None
    min_batch, opt_batch, max_batch = parse_batch_range(batch)
    settings = ExportSettings(
        precisions=_list(precision), formats=_list(format), input_size=input_size, opset=opset,
        calib=calib or (), calib_count=calib_count, calib_method=calib_method, target=target,
        remainder=remainder, quantize_sensitive=quantize_sensitive, outputs=outputs,
        engine=EngineOptions(workspace_gib=workspace, optimization_level=opt_level, timing_cache=timing_cache,
                             min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch))
    outcome = export_model(model, settings, out_dir=out)
    table = Table(title=f"exported {outcome.checkpoint.name} (checked against PyTorch on {outcome.check_images} images)")
    checked = outcome.files[0].parity
    # An instance file: its instances matched to PyTorch's (found, their mean mask IoU, score difference).
    instances = bool(checked and checked.kind == "instances")
    agreement = ("instances found %", "mask IoU %") if instances else ("label agreement %",)
    for column in ("file", "precision", "size MB", "output MB/img", "seconds", "max |diff|", *agreement):
        table.add_column(column, justify="left" if column == "file" else "right")
    for file in outcome.files:
        parity = file.parity
        if parity is None:
            measured = ("-",) * len(agreement)
        else:
            measured = ((f"{parity.matched:.2f}",) if instances else ()) + (f"{parity.pixel_agreement:.2f}",)
        table.add_row(file.path.name, file.precision, f"{file.size_bytes / 1e6:.2f}",
                      f"{file.output_bytes / 1e6:.2f} ({'+'.join(file.outputs)})", f"{file.seconds:.1f}",
                      f"{parity.max_abs_diff:.2e}" if parity and parity.max_abs_diff is not None else "-", *measured)
    console.print(table)
    console.print(f"files in {escape(str(outcome.files[0].path.parent))}")
    if outcome.engine_commands:
        console.print(Text.assemble(("TensorRT is not installed here", "yellow"),
                                    " (pip install 'gkd-deploy[tensorrt]', or JetPack on a Jetson): the ONNX files "
                                    "above are checked; build the engines where TensorRT is with:"))
        for command in outcome.engine_commands:
            console.print(Text("  " + command), soft_wrap=True)
    if outcome.calibration_images:
        console.print(f"int8 calibrated on {outcome.calibration_images} images ({settings.calib_method}), Q/DQ placed for "
                      f"{settings.target}")
    first = outcome.files[-1].path
    next_step(f"gkd validate {first} --targets NAME=PATH,...")
