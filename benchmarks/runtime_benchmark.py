"""Runtime of the deployed segmenters at 512 x 512, through `gkd_deploy.benchmark` (what `gkd benchmark` runs).

    python benchmarks/runtime_benchmark.py                        # CPU: torch, ONNX Runtime fp32 and int8
    python benchmarks/runtime_benchmark.py --run demo-out/run     # ... with the trained demo run as "demo"
    python benchmarks/runtime_benchmark.py --device cuda --peak-tflops 989   # GPU: torch eager vs torch.compile

CPU: the demo model (`gkd demo`'s student: tiny-student + SemFPN 64/32), vit-s + SemFPN and vit-s +
Mask2Former-edge, each exported at --size into a temporary run folder (fp32, and int8 calibrated on
--calib-count synthetic source images; latency does not depend on the count), then timed on torch
fp32 and ONNX Runtime fp32 / int8 at batch 1. GPU: vit-s + SemFPN on torch eager and torch.compile
in fp32 / bf16 / fp16 (autocast) at batch 1 and 32, with FLOPs per image and the share of
--peak-tflops reached. Weights are random (speed does not depend on them) unless --run names the
demo run. Prints the table and writes the JSON report (--json).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from export_benchmark import synthetic_data  # benchmarks/ is on sys.path when run as a script
from gkd_deploy.benchmark import run_benchmark
from gkd_deploy.cli.benchmark import benchmark_table
from gkd_deploy.errors import ExportError
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir

ARCHITECTURES = {
    "demo": SegmenterConfig("tiny-student", decoder="semfpn",
                            decoder_options={"neck_channels": 64, "head_channels": 32, "groups": 8}),
    "vit-s+semfpn": SegmenterConfig("vit-s", decoder="semfpn"),
    "vit-s+mask2former-edge": SegmenterConfig("vit-s", decoder="mask2former-edge"),
}


def make_run(name: str, folder: Path, size: int, source: Path | None, trained_run: Path | None) -> RunDir:
    """A run folder named `name`: the trained run's checkpoint, or the architecture with random weights."""
    run = RunDir(folder / name)
    if trained_run is not None:
        run.checkpoint_dir.mkdir(parents=True)
        shutil.copy(RunDir(trained_run).segmenter_checkpoint, run.segmenter_checkpoint)
    else:
        config = dataclasses.replace(ARCHITECTURES[name], img_size=size)
        save_segmenter(build_segmenter(config), run.segmenter_checkpoint)
    write_yaml(run.config_path, {"source": f"cityscapes={source}"} if source else {})
    return run


def export(run: RunDir, size: int, calib_count: int, console: Console) -> None:
    """fp32 and int8 files in RUN/export; an int8 failure leaves fp32 (written first) and is reported.
    The int8 file is placed for ONNX Runtime (`--target onnxruntime`): this part runs on its CPU provider."""
    started = time.perf_counter()
    try:
        export_model(run.path, precisions=("fp32", "int8"), input_size=(size, size), calib_count=calib_count,
                     target="onnxruntime")
    except ExportError as error:  # the benchmark lists the missing file as skipped
        console.print(f"[yellow]{run.path.name}: int8 export failed[/]: {error}")
    console.print(f"{run.path.name}: export fp32 + int8 ({calib_count} calibration images) "
                  f"{time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", default=None, help=f"comma-separated from {', '.join(ARCHITECTURES)} "
                        "(default: all on cpu, vit-s+semfpn on cuda)")
    parser.add_argument("--run", type=Path, help="the trained demo run (gkd demo's RUN folder) to use as 'demo'")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", default=None, help="batch sizes (default: 1 on cpu, 1,32 on cuda)")
    parser.add_argument("--data", default="benchmark-data", help="synthetic data folder for calibration (written if absent)")
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-runs", type=int, default=10)
    parser.add_argument("--min-time", type=float, default=5.0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak, for the share reached")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls in fp32 on CUDA")
    parser.add_argument("--json", type=Path, default=Path("runtime-benchmark.json"))
    args = parser.parse_args()
    console = Console(width=160)
    cuda = args.device == "cuda"
    names = args.models.split(",") if args.models else (["vit-s+semfpn"] if cuda else list(ARCHITECTURES))
    batches = [int(b) for b in (args.batch or ("1,32" if cuda else "1")).split(",")]
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    with tempfile.TemporaryDirectory() as scratch:
        source = None if cuda else synthetic_data(Path(args.data))[0]  # calibration images for int8
        runs = [make_run(name, Path(scratch), args.size, source, args.run if name == "demo" else None)
                for name in names]
        if not cuda:
            for run in runs:
                export(run, args.size, args.calib_count, console)
        started = time.perf_counter()
        report = run_benchmark(
            [run.path for run in runs], backends=("torch", "torch-compile") if cuda else ("torch", "onnxruntime"),
            precisions=("fp32", "bf16", "fp16") if cuda else ("fp32", "int8"), batch_sizes=batches,
            input_sizes=[(args.size, args.size)], device=args.device, warmup=args.warmup, min_runs=args.min_runs,
            min_seconds=args.min_time, peak_tflops=args.peak_tflops)
    console.print(benchmark_table(report))
    console.print(f"benchmark {time.perf_counter() - started:.0f} s; TF32 matmul {'on' if args.tf32 else 'off'}; "
                  f"weights {'of ' + str(args.run) + ' for demo, ' if args.run else ''}random otherwise")
    console.print(f"report: {report.write_json(args.json)}")


if __name__ == "__main__":
    main()
