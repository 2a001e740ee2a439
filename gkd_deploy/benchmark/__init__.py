"""`gkd benchmark`: latency, throughput, memory, size, FLOPs, accuracy and power of a segmenter
across backends, precisions, batch sizes and input sizes, as one table (the Ultralytics habit).

    from gkd_deploy.benchmark import run_benchmark

    report = run_benchmark(["runs/exp1"], backends=("torch", "onnxruntime"), precisions=("fp32", "int8"))
    report.write_json("runs/exp1/benchmark.json"); report.write_csv(...); report.write_plot(...)

Modules: `runner` (the loop), `backends` (the backend table and skip reasons), `sources` (what a
model path resolves to), `timing` (warm-up, timed runs, percentiles), `memory` (peak host/GPU
memory), `flops`, `jetson` (board, power mode, clocks, tegrastats), `system`, `report` (rows,
JSON, CSV) and `plot` (latency against mIoU, drawn with OpenCV).
"""

from gkd_deploy.benchmark.backends import BACKENDS, PRECISIONS
from gkd_deploy.benchmark.jetson import JetsonInfo, detect_jetson
from gkd_deploy.benchmark.report import BenchmarkReport, BenchmarkRow, BenchmarkSettings, read_csv, read_json
from gkd_deploy.benchmark.runner import DEFAULT_BACKENDS, default_report_paths, run_benchmark
from gkd_deploy.benchmark.system import SystemInfo
from gkd_deploy.benchmark.timing import LatencyStats, TimingPolicy

__all__ = [
    "BACKENDS", "PRECISIONS", "DEFAULT_BACKENDS", "BenchmarkReport", "BenchmarkRow", "BenchmarkSettings", "JetsonInfo",
    "LatencyStats", "SystemInfo", "TimingPolicy", "default_report_paths", "detect_jetson", "read_csv", "read_json",
    "run_benchmark",
]
