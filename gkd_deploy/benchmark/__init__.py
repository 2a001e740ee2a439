"""`gkd benchmark`: latency, throughput, memory, size, FLOPs, accuracy and power of a segmenter
across backends, precisions, batch sizes and input sizes, as one table (the Ultralytics habit).

    from gkd_deploy.benchmark import run_benchmark

    report = run_benchmark(["runs/exp1"], backends=("torch", "onnxruntime"), precisions=("fp32", "int8"))
    report.write_json("runs/exp1/benchmark.json"); report.write_csv(...); report.write_plot(...)

Modules: `runner` (the loop), `backends` (the backend table and skip reasons), `sources` (what a
model path resolves to), `timing` (warm-up, timed runs, percentiles), `memory` (peak host/GPU
memory), `flops`, `jetson` (board, power mode, clocks, tegrastats), `system`, `report` (rows,
JSON, CSV) and `plot` (latency against mIoU, drawn with matplotlib where installed).
"""

import importlib

# Names are imported on first use (PEP 562), so that `gkd --help` does not load the benchmark.
_HOMES = {
    "BACKENDS": "backends", "JetsonInfo": "jetson", "detect_jetson": "jetson",
    "BenchmarkReport": "report", "BenchmarkRow": "report", "BenchmarkSettings": "report", "read_csv": "report",
    "read_json": "report", "DEFAULT_BACKENDS": "runner", "default_report_paths": "runner", "next_commands": "runner", "run_benchmark": "runner",
    "SystemInfo": "system", "LatencyStats": "timing", "TimingPolicy": "timing",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
