"""`gkd benchmark`: latency, throughput, memory, size and FLOPs (and mIoU, power) of models across
backends, precisions, batch sizes and input sizes, as one table plus JSON, CSV and a PNG plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from gkd_deploy.cli import options
from gkd_deploy.cli.console import console, fmt, next_step, track
from gkd_deploy.size import Size
from gkd_deploy.errors import ConfigError, GKDError
from gkd_deploy.fileio import check_writable

if TYPE_CHECKING:
    from gkd_deploy.benchmark import BenchmarkReport, BenchmarkRow

# Short headers that wrap at their space keep the table narrow.
COLUMNS = ("model", "backend", "prec", "batch", "input", "runs", "p50 ms", "p90 ms", "p99 ms", "first ms", "img/s",
           "host MB", "GPU MB", "size MB", "GFLOP per img", "% peak", "mIoU", "W", "mJ/img")
TEXT_COLUMNS = ("model", "backend", "prec", "input")


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _batch_sizes(text: str) -> list[int]:
    try:
        return [int(part) for part in _list(text)]
    except ValueError:
        raise ConfigError(f"--batch '{text}' is not a comma-separated list of whole numbers (e.g. 1,8)") from None


def _input_sizes(text: str | None) -> list[tuple[int, int]] | None:
    """'512x512,1024x512' (WIDTHxHEIGHT, as `gkd export --size`) -> [(height, width), ...]."""
    if not text:
        return None
    return [Size.parse(part, "--size").hw for part in _list(text)]


STATUS_STYLES = {"failed": ("failed", "red"), "skipped": ("skipped", "yellow"), "ok": ("note", "dim")}


def _reason_lines(report: BenchmarkReport) -> list[str]:
    """Skipped and failed rows, then notes on measured ones (a score that is missing or does not
    apply), one line per (model, backend, status, reason)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for row in (*report.not_run, *(row for row in report.ok_rows if row.reason)):
        combination = f"{row.precision} b{row.batch} {row.size_text}"
        groups[(row.model, row.backend, row.status, row.reason)].append(combination)
    lines = []
    for (model, backend, status, reason), combinations in groups.items():
        word, colour = STATUS_STYLES[status]
        shown = ", ".join(dict.fromkeys(combinations))
        lines.append(f"[{colour}]{word}[/] {escape(model)} {backend} ({shown}): {escape(reason)}")
    return lines


def _system_line(report: BenchmarkReport) -> str:
    system = report.system
    features = f", {' '.join(system.cpu_features)}" if system.cpu_features else ""
    parts = [f"{system.cpu} ({system.cores} cores{features}, {system.torch_threads} torch threads)",
             f"GPU {system.gpu}" if system.gpu else "no GPU", f"torch {system.torch}"]
    parts += [f"onnxruntime {system.onnxruntime}"] if system.onnxruntime else []
    parts += [f"TensorRT {system.tensorrt}"] if system.tensorrt else []
    line = ", ".join(parts)
    if system.jetson:
        jetson = system.jetson
        line += (f"\n{jetson['model']}, L4T {jetson['l4t'] or 'unknown'}, power mode {jetson['power_mode'] or 'unknown'}, "
                 f"clocks {jetson['clocks']}")
    return escape(line)


def benchmark_table(report: BenchmarkReport) -> Table:
    """One row per measured combination; skipped and failed ones, with their reasons, and notes below it.
    Columns no row fills (GPU memory on a CPU, mIoU without data, power off a Jetson) are left out."""
    rows = report.ok_rows
    models = list(dict.fromkeys(row.model for row in report.rows))
    sizes = list(dict.fromkeys(row.size_text for row in report.rows))
    batches = list(dict.fromkeys(row.batch for row in report.rows))
    shown = {
        "model": len(models) > 1,
        "input": len(sizes) > 1,
        "batch": len(batches) > 1,
        "first ms": any(row.backend == "torch-compile" for row in rows),
        "GPU MB": any(row.gpu_mb is not None for row in rows),
        "% peak": any(row.peak_percent is not None for row in rows),
        "mIoU": any(row.miou is not None for row in rows),
        "W": any(row.power_w is not None for row in rows),
        "mJ/img": any(row.energy_mj is not None for row in rows),
    }
    title = "gkd benchmark" + (f": {escape(models[0])}" if len(models) == 1 else "") + \
        (f" at {sizes[0]}" if len(sizes) == 1 else "") + (f", batch {batches[0]}" if len(batches) == 1 else "")
    caption = "\n".join([_system_line(report), *_reason_lines(report)])
    table = Table(title=title, caption=caption, caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    columns = [column for column in COLUMNS if shown.get(column, True)]
    for column in columns:
        # Names never wrap or shorten; the numbers give way on a narrow terminal.
        table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right", no_wrap=column in TEXT_COLUMNS)
    for row in rows:
        values = _cells(row)
        table.add_row(*(values[column] for column in columns))
    return table


def _cells(row: BenchmarkRow) -> dict[str, str]:
    return {
        "model": escape(row.model), "backend": row.backend, "prec": row.precision, "batch": str(row.batch),
        "input": row.size_text, "runs": str(row.runs),
        "p50 ms": fmt(row.p50_ms), "p90 ms": fmt(row.p90_ms), "p99 ms": fmt(row.p99_ms),
        "first ms": fmt(row.first_run_ms, 0), "img/s": fmt(row.images_per_s, 1),
        "host MB": fmt(row.host_mb, 0), "GPU MB": fmt(row.gpu_mb, 0), "size MB": fmt(row.size_mb),
        "GFLOP per img": fmt(row.gflops, 2), "% peak": fmt(row.peak_percent, 1),
        "mIoU": fmt(row.miou, 2), "W": fmt(row.power_w, 1), "mJ/img": fmt(row.energy_mj, 1),
    }


def benchmark(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Run folder, checkpoint, .onnx file or engine; repeat or comma-separate.")],
    backends: Annotated[str, typer.Option(help="torch, torch-compile, onnxruntime, onnxruntime-cuda, tensorrt (comma-separated).")] = "torch,onnxruntime",
    precision: Annotated[str, typer.Option(help="fp32, fp16, bf16, int8 (comma-separated); an exported file runs at its own.")] = "fp32",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated (e.g. 1,8).")] = "1",
    size: Annotated[Optional[str], typer.Option(help="Input sizes WIDTHxHEIGHT, comma-separated (default: each model's own).")] = None,
    device: Annotated[str, typer.Option(help=options.DEVICE_HELP + " Where torch runs; cpu also skips the GPU backends.")] = "auto",
    warmup: Annotated[int, typer.Option(help="Untimed runs first (the first one is reported as 'first run').")] = 5,
    min_runs: Annotated[int, typer.Option(help="Timed runs at least ...")] = 30,
    min_time: Annotated[float, typer.Option(help="... and at least this many seconds of them.")] = 2.0,
    data: Annotated[Optional[str], typer.Option(help="NAME=PATH,... labelled data to add mIoU (mean over domains; semantic models, an instance model's rows say where its mask AP is).")] = None,
    split: Annotated[str, typer.Option(help="Split of --data to score: val or train.")] = "val",
    peak_tflops: Annotated[Optional[float], typer.Option(help="The device's peak TFLOP/s, for the share reached.")] = None,
    workers: Annotated[int, typer.Option(help="Data loader worker processes for --data.")] = 0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="JSON report (default: next to the first model).")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="CSV table (default: next to the first model).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="PNG of p50 latency against mIoU (needs --data; default: next to the first model).")] = None,
) -> None:
    """Warm up, then time every combination until enough runs and seconds; p50/p90/p99 latency,
    throughput, peak memory, file size, FLOPs; skipped combinations say why."""
    from gkd_deploy.benchmark import default_report_paths, next_commands, run_benchmark

    models = [part for item in model for part in _list(item)]
    if plot is not None and not data:
        raise ConfigError("--plot draws p50 latency against mIoU: also give --data NAME=PATH,... to score the models")
    defaults = default_report_paths(models[0])
    # The reports are written after every measurement: a path that cannot be written fails now, not then.
    check_writable(json_path or defaults["json"], "JSON report")
    check_writable(csv_path or defaults["csv"], "CSV report")
    if data:
        check_writable(plot or defaults["plot"], "plot")
    report = run_benchmark(models, backends=_list(backends), precisions=_list(precision),
                           batch_sizes=_batch_sizes(batch), input_sizes=_input_sizes(size), device=device,
                           warmup=warmup, min_runs=min_runs, min_seconds=min_time, data=data, split=split,
                           peak_tflops=peak_tflops, num_workers=workers, track=track)
    console.print(benchmark_table(report))
    written = [report.write_json(json_path or defaults["json"]), report.write_csv(csv_path or defaults["csv"])]
    if any(row.miou is not None for row in report.rows):
        drawn = report.write_plot(plot or defaults["plot"])  # None without matplotlib (the log says so)
        written += [drawn] if drawn is not None else []
    elif data:
        console.print("[yellow]no plot:[/] no measured row has an mIoU")
    console.print(f"{len(report.ok_rows)} measured, {len(report.not_run)} skipped or failed; report: "
                  + escape(", ".join(str(path) for path in written)))
    if not report.ok_rows:
        raise GKDError("nothing could be measured: every combination was skipped or failed (the reasons are in the "
                       "table and the report)")
    next_step(*next_commands(report))
