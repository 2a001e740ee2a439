"""gkd's int8 files against NVIDIA ModelOpt's ONNX PTQ on the same fp32 export and the same
calibration images: Q/DQ placement, agreement with fp32, mIoU delta, file size, ORT CPU latency.

    python benchmarks/int8_vs_modelopt.py --out int8-bench                 # vit-s + SemFPN, 512x512
    python benchmarks/int8_vs_modelopt.py --encoder tiny-student --size 64 --calib-count 8 --runs 3

ModelOpt runs in a venv of its own (`--modelopt-venv`, default OUT/modelopt-venv, made with pip if
absent: nvidia-modelopt[onnx] pins its own onnx and onnxruntime-gpu, whose CPU provider needs no
GPU), called as `python -m modelopt.onnx.quantization` with max calibration on the CPU. If that
venv cannot be made the script says so and goes on with gkd's rows.

The model has random weights (placement and speed do not depend on them); the images are the
built-in synthetic street scenes: clear ones for calibration, fog/night/rain/snow with labels for
agreement and mIoU. Latency is batch 1 on this machine's CPU: on a shared machine it is noisy.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from gkd_deploy.calib import quantize_int8
from gkd_deploy.data.synthetic.render import render_scene
from gkd_deploy.data.synthetic.styles import TARGET_STYLES
from gkd_deploy.exporters import export_onnx
from gkd_deploy.exporters.fp16 import convert_int8_remainder
from gkd_deploy.exporters.pipeline import synthetic_images
from gkd_deploy.metrics import SegmentationMetric
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

MODELOPT = "nvidia-modelopt[onnx]==0.47.*"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def modelopt_python(venv: Path) -> Path | None:
    """The venv's python with ModelOpt importable, made now if needed; None (and one line) if not."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import modelopt.onnx.quantization"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"making the ModelOpt venv {venv} ({MODELOPT}; several GB, minutes)", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", MODELOPT], check]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"ModelOpt: cannot make its venv ({' '.join(step[:3])}: {last[0]}); going on with gkd's rows")
            return None
    return python


def modelopt_int8(python: Path, fp32: Path, calibration: Path, out: Path, per_node: bool) -> Path | None:
    command = [str(python), "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32), "--quantize_mode", "int8",
               "--calibration_data_path", str(calibration), "--calibration_method", "max",
               "--calibration_eps", "cpu", "--output_path", str(out)] + (["--calibrate_per_node"] if per_node else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not out.is_file():
        print(f"ModelOpt: quantization failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
        return None
    return out


def placement(path: Path) -> dict:
    """Q/DQ counts and, per op type, how many inputs read a DequantizeLinear (through Casts)."""
    model = onnx.load(str(path))
    producer = {name: node for node in model.graph.node for name in node.output}
    constants = {t.name for t in model.graph.initializer}

    def source(name: str):
        node = producer.get(name)
        while node is not None and node.op_type == "Cast":
            node = producer.get(node.input[0])
        return node

    readers: collections.Counter = collections.Counter()
    for node in model.graph.node:
        if node.op_type in QDQ_OPS + ("Cast", "Shape"):
            continue
        for name in node.input:
            dequantize = source(name)
            if dequantize is not None and dequantize.op_type == "DequantizeLinear":
                quantize = producer.get(dequantize.input[0])
                weight = dequantize.input[0] in constants or (quantize is not None
                                                              and quantize.input[0] in constants)
                readers[f"{node.op_type}{'(w)' if weight else ''}"] += 1
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return {"q": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "dq": sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
            "opset": opset, "reads_int8": dict(sorted(readers.items()))}


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(runner: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    name = runner.get_inputs()[0].name
    return np.concatenate([runner.run(None, {name: images[i:i + 1]})[1] for i in range(len(images))])


def latency_ms(runner: ort.InferenceSession, image: np.ndarray, runs: int) -> float:
    name = runner.get_inputs()[0].name
    for _ in range(2):
        runner.run(None, {name: image})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        runner.run(None, {name: image})
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def miou(labels: np.ndarray, truth: np.ndarray, classes: int) -> float:
    metric = SegmentationMetric(classes)
    metric.update(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    return metric.compute().miou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("int8-vs-modelopt"))
    parser.add_argument("--encoder", default="vit-s")
    parser.add_argument("--decoder", default="semfpn")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calib-count", type=int, default=32)
    parser.add_argument("--eval-count", type=int, default=2, help="labelled images per target style")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: its default)")
    parser.add_argument("--modelopt-venv", type=Path, help="default: OUT/modelopt-venv")
    parser.add_argument("--modelopt-per-node", action="store_true",
                        help="ModelOpt calibrates node by node (less memory: it otherwise holds every tensor of every "
                             "calibration image, about 0.6 GB per 512x512 image for vit-s)")
    args = parser.parse_args()
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    segmenter = build_segmenter(SegmenterConfig(args.encoder, decoder=args.decoder, img_size=args.size)).eval()
    fp32 = export_onnx(segmenter, out / "model-fp32.onnx")
    size = (args.size, args.size)
    calibration = synthetic_images(args.calib_count, size)
    calibration_npy = out / "calibration.npy"
    np.save(calibration_npy, calibration.astype(np.float32))
    scenes = [render_scene(10_000 + i, (args.size, args.size), style)
              for style in TARGET_STYLES for i in range(args.eval_count)]
    eval_images = np.stack([image.transpose(2, 0, 1) for image, _ in scenes]).astype(np.float32)
    truth = np.stack([label for _, label in scenes])

    files = {"fp32": fp32}
    python = modelopt_python(args.modelopt_venv or out / "modelopt-venv")
    if python is not None:
        made = time.perf_counter()
        modelopt = modelopt_int8(python, fp32, calibration_npy, out / "modelopt-int8.onnx",
                                 args.modelopt_per_node)
        if modelopt is not None:
            files["modelopt (fp16 rest)"] = modelopt
            print(f"ModelOpt int8: {time.perf_counter() - made:.0f} s", flush=True)
    made = time.perf_counter()
    trt_fp32_rest = quantize_int8(fp32, out / "gkd-int8-tensorrt-fp32rest.onnx", calibration, target="tensorrt",
                                  cache_dir=out / ".calib-cache")
    files["gkd tensorrt (fp16 rest)"] = convert_int8_remainder(trt_fp32_rest, out / "gkd-int8-tensorrt.onnx")
    files["gkd tensorrt (fp32 rest)"] = trt_fp32_rest
    files["gkd onnxruntime (fp32 rest)"] = quantize_int8(fp32, out / "gkd-int8-onnxruntime.onnx", calibration,
                                                         target="onnxruntime", cache_dir=out / ".calib-cache")
    print(f"gkd int8 (both targets): {time.perf_counter() - made:.0f} s", flush=True)

    classes = segmenter.class_set.num_classes
    rows = []
    reference_labels = None
    reference_miou = None
    fp32_ms = None
    for name, path in files.items():
        runner = session(path, args.threads)
        labels = predict(runner, eval_images)
        reference_labels = labels if reference_labels is None else reference_labels
        score = miou(labels, truth, classes)
        reference_miou = score if reference_miou is None else reference_miou
        ms = latency_ms(runner, eval_images[:1], args.runs)
        fp32_ms = fp32_ms or ms
        row = {"file": name, "path": path.name, "size_mb": round(path.stat().st_size / 1e6, 2),
               "agreement_with_fp32_pct": round(100.0 * float((labels == reference_labels).mean()), 2),
               "miou": round(score, 2), "miou_delta": round(score - reference_miou, 2),
               "ort_cpu_ms": round(ms, 1), "speedup_vs_fp32": round(fp32_ms / ms, 2), **placement(path)}
        rows.append(row)
        print(f"{name:28s} {row['size_mb']:7.2f} MB  agree {row['agreement_with_fp32_pct']:6.2f}%  "
              f"mIoU {row['miou']:6.2f} ({row['miou_delta']:+.2f})  ORT CPU {row['ort_cpu_ms']:8.1f} ms "
              f"({row['speedup_vs_fp32']:.2f}x)  Q {row['q']:4d} DQ {row['dq']:4d}  {row['reads_int8']}", flush=True)
    summary = {"encoder": args.encoder, "decoder": args.decoder, "size": args.size, "calibration_images": len(calibration),
               "eval_images": len(eval_images), "onnxruntime": ort.__version__, "seconds": round(time.perf_counter() - started),
               "rows": rows}
    (out / "int8_vs_modelopt.json").write_text(json.dumps(summary, indent=2))
    with open(out / "int8_vs_modelopt.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "reads_int8"] + ["reads_int8"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "reads_int8": json.dumps(row["reads_int8"])})
    print(f"wrote {out / 'int8_vs_modelopt.json'} and .csv; {summary['seconds']} s in all "
          "(latency on a shared CPU is noisy)")


if __name__ == "__main__":
    main()
