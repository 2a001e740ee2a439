"""gkd benchmark: timing statistics, skip reasons, measured rows, mIoU, report files, Jetson probes, CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import stat
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gkd_deploy.benchmark import (
    JetsonInfo, LatencyStats, TimingPolicy, default_report_paths, read_csv, read_json, run_benchmark,
)
from gkd_deploy.benchmark import backends as backends_module
from gkd_deploy.benchmark.backends import BACKENDS, resolve_file
from gkd_deploy.benchmark.flops import flops_per_image, share_of_peak
from gkd_deploy.benchmark.jetson import (
    ROOT_HINT, TegrastatsSampler, board_power_mw, detect_jetson, parse_clock_state, parse_power_mode, parse_rails,
)
from gkd_deploy.benchmark.memory import HostPeakMemory
from gkd_deploy.benchmark.plot import BACKEND_COLOURS, HEIGHT, WIDTH
from gkd_deploy.benchmark.sources import resolve_model
from gkd_deploy.benchmark.timing import WallClock, measure_latency, timed_runs, warm_up
from gkd_deploy.cli.app import app, main
from gkd_deploy.errors import ConfigError
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir

runner = CliRunner()
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="plots need matplotlib (pip install '.[plots]')")
SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}
QUICK = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0}

# tegrastats lines as the boards print them (trimmed of the fields between RAM and the rails).
ORIN_NX = ("RAM 2451/7620MB (lfb 6627x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,2%@729] EMC_FREQ 0%@2133 "
           "GR3D_FREQ 0%@[305] VDD_IN 5124mW/5124mW VDD_CPU_GPU_CV 1156mW/1156mW VDD_SOC 1475mW/1475mW")
AGX_ORIN = ("RAM 2451/30593MB (lfb 6627x4MB) SWAP 0/15296MB (cached 0MB) CPU [0%@729] GR3D_FREQ 0%@[305,305] "
            "CPU@46.937C VDD_GPU_SOC 2398mW/2398mW VDD_CPU_CV 799mW/799mW VIN_SYS_5V0 3627mW/3627mW")
AGX_XAVIER = ("RAM 1903/31927MB (lfb 7029x4MB) SWAP 0/15963MB (cached 0MB) CPU [2%@1190] EMC_FREQ 0% GR3D_FREQ 0% "
              "GPU 0mW/0mW CPU 397mW/397mW SOC 1190mW/1190mW CV 0mW/0mW VDDRQ 198mW/198mW SYS5V 1830mW/1830mW")
NANO = ("RAM 1539/3964MB (lfb 108x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [5%@102,3%@102] "
        "EMC_FREQ 3%@204 GR3D_FREQ 0%@76 APE 25 PLL@21C POM_5V_IN 2166/2166 POM_5V_GPU 0/0 POM_5V_CPU 442/442")
TX2 = "RAM 1780/7853MB (lfb 1x4MB) CPU [3%@345] VDD_IN 3007/3007 VDD_CPU 229/229 VDD_GPU 76/76 VDD_SOC 535/535"
CLOCKS_FIXED = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
NV Power Mode: MAXN"""
CLOCKS_DYNAMIC = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu2: Online=0 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=76800000"""


# --- timing -------------------------------------------------------------------------------------


class ScriptedClock:
    """Calls the function and returns the next recorded latency, so statistics are exact."""

    name = "scripted"

    def __init__(self, latencies_ms):
        self.latencies = list(latencies_ms)
        self.calls = 0

    def measure(self, call):
        call()
        self.calls += 1
        return self.latencies.pop(0)


def test_latency_statistics_are_numpy_percentiles():
    samples = np.random.default_rng(0).gamma(2.0, 3.0, size=257)
    stats = LatencyStats.from_samples(samples.tolist(), first_run_ms=99.0)
    assert stats.runs == 257 and stats.first_run_ms == 99.0
    assert stats.p50_ms == pytest.approx(np.percentile(samples, 50))
    assert stats.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert stats.p99_ms == pytest.approx(np.percentile(samples, 99))
    assert stats.mean_ms == pytest.approx(samples.mean())
    assert stats.images_per_second(8) == pytest.approx(8 * 1000 / samples.mean())


def test_timing_loop_honours_warmup_min_runs_and_the_cap():
    calls = []
    clock = ScriptedClock([50.0, 1.0, 4.0, 2.0, 3.0, 5.0, 6.0])
    stats = measure_latency(lambda: calls.append(1), clock, TimingPolicy(warmup=3, min_runs=6, min_seconds=0))
    assert len(calls) == 3 + 6 and stats.runs == 6
    assert clock.calls == 1 + 6 and stats.first_run_ms == 50.0  # of the warm-up runs only the first is timed
    assert stats.p50_ms == pytest.approx(np.percentile([1.0, 4.0, 2.0, 3.0, 5.0, 6.0], 50))
    # Without warm-up the first timed run is also the first run.
    stats = measure_latency(lambda: None, ScriptedClock([9.0, 1.0]), TimingPolicy(warmup=0, min_runs=2, min_seconds=0))
    assert stats.first_run_ms == 9.0 and stats.runs == 2
    # min_seconds keeps going past min_runs; max_runs stops it.
    clock = WallClock()
    assert len(timed_runs(lambda: None, clock, TimingPolicy(min_runs=1, min_seconds=10, max_runs=25))) == 25
    samples = timed_runs(lambda: torch.ones(1), clock, TimingPolicy(min_runs=1, min_seconds=0.05, max_runs=10**6))
    assert len(samples) > 1 and sum(samples) < 1000
    assert warm_up(lambda: None, clock, 0) is None


def test_timing_policy_rejects_impossible_settings():
    for settings in ({"min_runs": 0}, {"warmup": -1}, {"min_seconds": -1.0}, {"min_runs": 10, "max_runs": 5}):
        with pytest.raises(ConfigError):
            TimingPolicy(**settings)


def test_share_of_peak_arithmetic():
    assert share_of_peak(2e9, 500.0, 10.0) == pytest.approx(2e9 * 500 / 10e12 * 100)
    assert share_of_peak(None, 500.0, 10.0) is None and share_of_peak(2e9, 500.0, None) is None


def test_host_peak_memory_sees_an_allocation_and_falls_back_without_proc(tmp_path):
    memory = HostPeakMemory()
    if memory.resettable:
        memory.reset()
        before = memory.peak_mb()
        block = np.ones(80_000_000 // 8)  # 80 MB, touched
        assert block.nbytes == 80_000_000 and memory.peak_mb() - before > 70
    fallback = HostPeakMemory(proc=tmp_path)  # no clear_refs / status there
    assert not fallback.resettable and "not reset" in fallback.method and fallback.peak_mb() > 0


# --- a tiny run with exported fp32 and int8 files -------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gkd_deploy.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("bench-data"), train=12, val=2, target=2, size=(128, 64), workers=1)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("bench-run") / "tiny")
    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64, decoder_options=SMALL_FPN))
    save_segmenter(model, run.segmenter_checkpoint)
    write_yaml(run.config_path, {"source": f"cityscapes={data.cityscapes}"})
    export_model(run.path, precisions=("fp32", "int8"), calib_count=12)
    return run


@pytest.fixture(scope="module")
def report(run, data):
    return run_benchmark([run.path], backends=("torch", "onnxruntime", "tensorrt"), precisions=("fp32", "int8"),
                         batch_sizes=(1, 2), data=f"acdc={data.acdc}", **QUICK)


def _row(report, backend, precision, batch=1):
    return next(r for r in report.rows if (r.backend, r.precision, r.batch) == (backend, precision, batch))


def test_measured_rows_have_consistent_numbers(report, run):
    assert len(report.rows) == 3 * 2 * 2  # backends x precisions x batch sizes
    measured = {(r.backend, r.precision, r.batch) for r in report.ok_rows}
    assert measured == {("torch", "fp32", 1), ("torch", "fp32", 2), ("onnxruntime", "fp32", 1),
                        ("onnxruntime", "fp32", 2), ("onnxruntime", "int8", 1), ("onnxruntime", "int8", 2)}
    files = {"torch": run.segmenter_checkpoint, "onnxruntime": None}
    gflops = flops_per_image(resolve_model(run.path).segmenter, (64, 64)) / 1e9
    for row in report.ok_rows:
        assert row.model == "tiny" and (row.height, row.width) == (64, 64)
        assert row.runs >= 3 and 0 < row.p50_ms <= row.p90_ms <= row.p99_ms
        assert row.images_per_s == pytest.approx(row.batch * 1000 / row.mean_ms)
        expected_file = files[row.backend] or run.export_dir / f"model-{row.precision}.onnx"
        assert row.file == str(expected_file)
        assert row.size_mb == pytest.approx(expected_file.stat().st_size / 1e6)
        assert row.gflops == pytest.approx(gflops) and gflops > 0
        assert row.host_mb > 0 and row.gpu_mb is None and row.power_w is None and row.peak_percent is None
        # ONNX Runtime is also timed with input and output bound on its device (no copies): no slower
        assert (row.compute_p50_ms is None) == (row.backend == "torch")
        assert row.compute_p50_ms is None or 0 < row.compute_p50_ms
    assert _row(report, "onnxruntime", "int8").size_mb < _row(report, "onnxruntime", "fp32").size_mb
    assert report.system.cores >= 1 and report.system.onnxruntime and report.system.jetson is None


def test_miou_is_what_the_evaluation_gives(report, run, data):
    from gkd_deploy.data.registry import build_domains, parse_dataset_list
    from gkd_deploy.evaluation.evaluator import evaluate
    from gkd_deploy.evaluation.inference import default_inference_mode
    from gkd_deploy.evaluation.runner import evaluate_model
    from gkd_deploy.evaluation.settings import EvalSettings
    from gkd_deploy.runtime.loader import load_predictor

    torch_miou = evaluate_model(run.path, f"acdc={data.acdc}", EvalSettings(workers=0, json_path=run.path / "e.json"))
    assert _row(report, "torch", "fp32").miou == pytest.approx(torch_miou.report.mean_miou, abs=1e-9)
    domains = build_domains(parse_dataset_list(f"acdc={data.acdc}")[0])
    predictor = load_predictor(run.export_dir / "model-int8.onnx")
    expected = evaluate(predictor, domains, class_set=predictor.info.class_set, mode=default_inference_mode(64, 16),
                        num_workers=0).mean_miou
    assert _row(report, "onnxruntime", "int8").miou == pytest.approx(expected, abs=1e-9)
    # Scored once per model, backend and precision: every batch size carries the same figure.
    assert _row(report, "onnxruntime", "int8", 2).miou == _row(report, "onnxruntime", "int8", 1).miou


def test_skipped_rows_say_why_and_how_to_fix_it(report, run, monkeypatch):
    torch_int8 = _row(report, "torch", "int8")
    assert torch_int8.status == "skipped" and "Q/DQ ONNX file" in torch_int8.reason
    source = resolve_model(run.path)
    _, missing = resolve_file(BACKENDS["onnxruntime"], source, "fp16", (64, 64), "auto")
    assert f"no model-fp16.onnx in {run.export_dir}" in missing and f"gkd export {run.path} --precision fp16" in missing
    _, wrong_size = resolve_file(BACKENDS["onnxruntime"], source, "fp32", (64, 128), "auto")
    assert "exported at 64x64, not 128x64" in wrong_size
    _, bf16 = resolve_file(BACKENDS["onnxruntime"], source, "bf16", (64, 64), "auto")
    assert "fp32, fp16, int8" in bf16
    # Unavailable backends: every combination gets the one reason.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(backends_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorrt" else real_find_spec(name, *a))
    assert "TensorRT is not installed" in resolve_file(BACKENDS["tensorrt"], source, "fp32", (64, 64), "auto")[1]
    monkeypatch.setattr(backends_module.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))
    monkeypatch.setattr(backends_module, "cuda_gpu_count", lambda: 0)
    assert "needs a CUDA GPU" in resolve_file(BACKENDS["tensorrt"], source, "fp32", (64, 64), "auto")[1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA GPU" in resolve_file(BACKENDS["torch"], source, "fp32", (64, 64), "cuda")[1]
    assert "--device cpu" in resolve_file(BACKENDS["onnxruntime-cuda"], source, "fp32", (64, 64), "cpu")[1]
    cuda_ort = resolve_file(BACKENDS["onnxruntime-cuda"], source, "fp32", (64, 64), "auto")[1]
    assert "onnxruntime-gpu" in cuda_ort or "no CUDA GPU" in cuda_ort
    tensorrt_rows = [r for r in report.rows if r.backend == "tensorrt"]
    assert len(tensorrt_rows) == 4 and all(r.status == "skipped" and r.reason for r in tensorrt_rows)
    assert len({r.reason for r in tensorrt_rows}) == 1


def test_an_exported_file_runs_at_its_precision_and_failures_do_not_stop_the_benchmark(run, monkeypatch):
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

    original = OnnxRuntimePredictor.labels  # what is timed: the file's labels output, as an application fetches it

    def fails_at_batch_two(self, images):
        if images.shape[0] == 2:
            raise RuntimeError("out of memory at batch 2\nsecond line")
        return original(self, images)

    monkeypatch.setattr(OnnxRuntimePredictor, "labels", fails_at_batch_two)
    int8 = run.export_dir / "model-int8.onnx"
    report = run_benchmark([int8, run.path], backends=("torch", "onnxruntime"), precisions=("fp32",),
                           batch_sizes=(1, 2), **QUICK)
    file_rows = [r for r in report.rows if r.model == "tiny/model-int8.onnx"]
    assert {r.precision for r in file_rows} == {"int8"}  # not crossed with --precision
    assert all(r.status == "skipped" and f"give {run.path} as --model" in r.reason
               for r in file_rows if r.backend == "torch")
    ort = {r.batch: r for r in file_rows if r.backend == "onnxruntime"}
    assert ort[1].ok and ort[2].status == "failed" and ort[2].reason == "RuntimeError: out of memory at batch 2"
    assert _row(report, "torch", "fp32", 2).ok  # the run folder's rows came after the failure


def test_bad_arguments_are_refused_before_anything_runs(run):
    with pytest.raises(ConfigError, match="unknown backend 'onnx'; did you mean onnxruntime"):
        run_benchmark([run.path], backends=("onnx",))
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        run_benchmark([run.path], precisions=("int4",))
    with pytest.raises(ConfigError, match="batch sizes"):
        run_benchmark([run.path], batch_sizes=(0,))
    with pytest.raises(ConfigError, match="unknown device"):
        run_benchmark([run.path], device="tpu")


def test_json_and_csv_round_trip(report, tmp_path):
    report.write_json(tmp_path / "b.json")
    assert read_json(tmp_path / "b.json") == report
    assert json.loads((tmp_path / "b.json").read_text())["settings"]["batch_sizes"] == [1, 2]
    report.write_csv(tmp_path / "b.csv")
    assert read_csv(tmp_path / "b.csv") == list(report.rows)
    assert (tmp_path / "b.csv").read_text().splitlines()[0].startswith("model,backend,precision,batch,height,width")


def _pixels_of(image, colour_name):
    from matplotlib.colors import to_rgb

    blue_green_red = np.array([round(255 * channel) for channel in reversed(to_rgb(colour_name))], np.uint8)
    return int((image == blue_green_red).all(axis=2).sum())


@needs_matplotlib
def test_plot_draws_one_point_per_scored_row(report, tmp_path):
    path = report.write_plot(tmp_path / "plot.png")
    image = cv2.imread(str(path))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert (image == 255).all(axis=2).mean() > 0.8  # a white background, drawn on
    for backend in ("torch", "onnxruntime"):
        assert _pixels_of(image, BACKEND_COLOURS[backend]) > 50
    assert _pixels_of(image, BACKEND_COLOURS["tensorrt"]) == 0  # not measured here, not drawn
    unscored = dataclasses.replace(report, rows=tuple(dataclasses.replace(r, miou=None) for r in report.rows))
    with pytest.raises(ConfigError, match="--data"):
        unscored.write_plot(tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_without_matplotlib_the_report_is_written_and_the_plot_skipped(report, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with caplog.at_level(logging.WARNING, logger="gkd_deploy.plotting"):
        assert report.write_plot(tmp_path / "plot.png") is None
    assert not (tmp_path / "plot.png").exists() and not list(tmp_path.iterdir())  # no temporary file either
    assert read_json(report.write_json(tmp_path / "b.json")) == report
    assert read_csv(report.write_csv(tmp_path / "b.csv")) == list(report.rows)
    (message,) = [record.getMessage() for record in caplog.records]
    assert "skipped" in message and "pip install 'gkd-deploy[plots]'" in message


def test_the_plot_does_not_import_the_report_that_writes_it():
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, gkd_deploy.benchmark.plot; "
                               "print('gkd_deploy.benchmark.report' in sys.modules, 'matplotlib' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert imported == ["False", "False"]


def test_default_report_paths(run):
    assert default_report_paths(run.path)["json"] == run.path / "benchmark.json"
    assert default_report_paths(run.export_dir / "model-int8.onnx")["plot"] == \
        run.export_dir / "model-int8.onnx.benchmark.png"


# --- Jetson ---------------------------------------------------------------------------------------


def _script(folder, name, body):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_board(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n")
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")


def test_rails_of_every_board_family():
    assert parse_rails(ORIN_NX) == {"VDD_IN": 5124, "VDD_CPU_GPU_CV": 1156, "VDD_SOC": 1475}
    assert board_power_mw(parse_rails(ORIN_NX)) == 5124
    assert board_power_mw(parse_rails(AGX_ORIN)) == 2398 + 799 + 3627  # no input rail: the module rails summed
    assert board_power_mw(parse_rails(AGX_XAVIER)) == 0 + 397 + 1190 + 0 + 198 + 1830
    assert parse_rails(NANO)["POM_5V_CPU"] == 442 and board_power_mw(parse_rails(NANO)) == 2166
    assert board_power_mw(parse_rails(TX2)) == 3007
    assert board_power_mw(parse_rails("RAM 2451/30593MB (lfb 6627x4MB) SWAP 0/15296MB")) is None


def test_power_mode_and_clock_state_parsing():
    assert parse_power_mode("NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n") == "MAXN (mode 0)"
    assert parse_power_mode("NV Power Mode: 15W\n") == "15W"
    assert parse_clock_state(CLOCKS_FIXED) == "fixed (jetson_clocks), GPU 1300 MHz"
    assert parse_clock_state(CLOCKS_DYNAMIC) == "dynamic, GPU 77-922 MHz; run sudo jetson_clocks to fix them"
    assert parse_clock_state("Error: you must run this script as root") == ROOT_HINT


def test_detect_a_faked_jetson(tmp_path):
    assert detect_jetson(root=tmp_path / "pc", path=str(tmp_path / "nobin")) is None
    _fake_board(tmp_path / "board")
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "nvpmodel", 'printf "NV Power Mode: MAXN\\n0\\n"')
    _script(bin_dir, "jetson_clocks", f"cat <<'EOF'\n{CLOCKS_FIXED}\nEOF")
    tegrastats = _script(bin_dir, "tegrastats", f'while true; do echo "{ORIN_NX}"; sleep 0.02; done')
    info = detect_jetson(root=tmp_path / "board", path=str(bin_dir))
    assert info == JetsonInfo(model="NVIDIA Jetson AGX Orin Developer Kit", l4t="36.3.0", power_mode="MAXN (mode 0)",
                              clocks="fixed (jetson_clocks), GPU 1300 MHz", tegrastats=str(tegrastats))
    _script(bin_dir, "jetson_clocks", 'echo "Error: you must run this script as root"; exit 1')
    assert detect_jetson(root=tmp_path / "board", path=str(bin_dir)).clocks == ROOT_HINT
    bare = detect_jetson(root=tmp_path / "board", path=str(tmp_path / "nobin"))
    assert bare.power_mode is None and bare.tegrastats is None and "not found" in bare.clocks


def test_tegrastats_power_reaches_the_benchmark_rows(run, tmp_path, monkeypatch):
    tegrastats = _script(tmp_path / "bin", "tegrastats", f'while true; do echo "{ORIN_NX}"; sleep 0.02; done')
    with TegrastatsSampler(str(tegrastats)) as sampler:
        deadline = time.monotonic() + 10
        while len(sampler.lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sampler.mean_power_w == pytest.approx(5.124) and sampler.process.poll() is not None
    jetson = JetsonInfo("NVIDIA Jetson Orin NX", "36.3.0", "MAXN (mode 0)", ROOT_HINT, str(tegrastats))
    monkeypatch.setattr("gkd_deploy.benchmark.runner.detect_jetson", lambda: jetson)
    report = run_benchmark([run.path], backends=("onnxruntime",), warmup=1, min_runs=3, min_seconds=0.4)
    row = report.rows[0]
    assert row.power_w == pytest.approx(5.124)
    assert row.energy_mj == pytest.approx(5.124 * 1000 / row.images_per_s)
    assert report.system.jetson["power_mode"] == "MAXN (mode 0)"


# --- command line -----------------------------------------------------------------------------------


def test_cli_writes_the_report_files_and_says_what_was_skipped(run, data):
    result = runner.invoke(app, ["benchmark", "--model", str(run.path), "--backends", "torch,onnxruntime",
                                 "--precision", "fp32,int8", "--batch", "1", "--warmup", "1", "--min-runs", "2",
                                 "--min-time", "0", "--data", f"acdc={data.acdc}"])
    assert result.exit_code == 0, result.output
    paths = default_report_paths(run.path)
    saved = read_json(paths["json"])
    assert [(r.backend, r.precision, r.status) for r in saved.rows] == [
        ("torch", "fp32", "ok"), ("torch", "int8", "skipped"), ("onnxruntime", "fp32", "ok"),
        ("onnxruntime", "int8", "ok")]
    assert read_csv(paths["csv"]) == list(saved.rows)
    if HAS_MATPLOTLIB:
        assert cv2.imread(str(paths["plot"])).shape == (HEIGHT, WIDTH, 3)
    else:
        assert not paths["plot"].exists() and "gkd-deploy[plots]" in result.output
    assert "skipped" in result.output and "Q/DQ" in result.output and "next:" in result.output
    assert saved.settings.min_runs == 2 and saved.settings.data == f"acdc={data.acdc}"


def test_cli_errors_are_one_line(run, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    for arguments, message in ((["--backends", "onnx"], "did you mean onnxruntime"),
                               (["--batch", "1,x"], "--batch '1,x'"),
                               (["--plot", "p.png"], "--plot draws p50 latency against mIoU")):
        with pytest.raises(SystemExit) as exit_info:
            main(["benchmark", "--model", str(run.path), *arguments])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert runner.invoke(app, ["benchmark", "--help"]).exit_code == 0


@pytest.mark.slow
def test_torch_compile_reports_its_compilation_as_the_first_run(run):
    # About 65 s on 2 cores with a cold Inductor cache (a few seconds warm).
    report = run_benchmark([run.path], backends=("torch-compile",), warmup=2, min_runs=5, min_seconds=0)
    row = report.rows[0]
    assert row.status == "ok", row.reason
    assert row.first_run_ms > 3 * row.p50_ms  # compilation happens in the first call


# --- GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_event_timing_and_autocast_rows(run):
    from gkd_deploy.benchmark.timing import CudaEventClock

    matrix = torch.rand(2048, 2048, device="cuda")
    assert CudaEventClock().measure(lambda: matrix @ matrix) > 0
    report = run_benchmark([run.path], backends=("torch",), precisions=("fp32", "bf16", "fp16"), device="cuda",
                           batch_sizes=(1, 4), peak_tflops=100.0, **QUICK)
    for row in report.rows:
        if row.precision == "bf16" and not torch.cuda.is_bf16_supported():
            assert row.status == "skipped"
            continue
        assert row.ok, row.reason
        assert row.gpu_mb > 0 and row.p50_ms > 0 and 0 < row.peak_percent < 100
    assert report.system.gpu == torch.cuda.get_device_name()


def test_a_benchmark_that_cannot_write_its_report_fails_before_measuring(run, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("gkd_deploy.benchmark.runner.run_benchmark", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["benchmark", "--model", str(run.path), "--json", str(blocker / "report.json")])
    assert result.exit_code == 1 and not calls  # nothing was measured, so nothing is lost
    assert "cannot write the JSON report" in str(result.exception)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="needs a machine without TensorRT")
def test_a_benchmark_where_nothing_could_run_exits_1(run, tmp_path):
    # Without TensorRT the only combination asked for is skipped.
    result = runner.invoke(app, ["benchmark", "--model", str(run.path), "--backends", "tensorrt", "--device", "cpu",
                                 "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")])
    assert result.exit_code == 1, result.output
    assert "nothing could be measured" in str(result.exception)
    assert (tmp_path / "r.json").is_file()  # the skip reasons are kept


def test_a_resident_run_leaves_the_labels_on_the_device_binding(run):
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

    predictor = OnnxRuntimePredictor(run.export_dir / "model-fp32.onnx", "cpu")
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    call = predictor.resident(images)
    call()
    np.testing.assert_array_equal(call.fetch(), predictor.labels(images))
    scores = predictor.resident(images, "scores")
    scores()
    np.testing.assert_allclose(scores.fetch(), predictor(images), atol=1e-6)


def test_next_commands_come_from_the_rows_not_from_their_text(report, run):
    from gkd_deploy.benchmark import next_commands

    commands = next_commands(report)
    # TensorRT is not installed here: no engine export is suggested; int8 in torch has no file to write.
    assert len(commands) == 1 and commands[0].startswith("gkd infer VIDEO --model ") and ".onnx" in commands[0]
    fp16 = run_benchmark([run.path], backends=("onnxruntime",), precisions=("fp16",), **QUICK)
    assert not fp16.ok_rows and next_commands(fp16) == [f"gkd export {run.path} --precision fp16"]


def test_reports_name_the_cpu_instruction_sets_latency_turns_on(tmp_path):
    from gkd_deploy.benchmark.system import SystemInfo
    from gkd_deploy.devices import cpu_features

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
                   "processor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert cpu_features(x86) == ("avx2", "fma", "avx512f", "avx512_vnni")
    assert cpu_features(arm) == ("asimd", "asimddp", "i8mm")
    assert cpu_features(tmp_path / "absent") == ()
    from gkd_deploy.devices import cpu_has_bf16

    bf16 = tmp_path / "bf16"
    bf16.write_text("flags\t\t: avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16(x86) is False and cpu_has_bf16(bf16) is True and cpu_has_bf16(tmp_path / "absent") is None
    fields = dict(cpu="c", cores=2, machine="x86_64", os="Linux", python="3.11", torch=None, torch_threads=None,
                  cuda=None, gpu=None, onnxruntime="1.20", tensorrt=None, gkd_deploy="0.1", host_memory="VmHWM",
                  jetson=None)
    info = SystemInfo(**fields, cpu_features=("avx2", "fma"))
    assert SystemInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert SystemInfo.from_dict(fields).cpu_features == ()  # a report written before the field existed
