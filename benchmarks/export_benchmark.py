"""Export cost and payoff: export time, file size, ONNX Runtime CPU latency per precision, and the
mIoU delta of each exported file against PyTorch on the synthetic target domains.

    python benchmarks/export_benchmark.py --model demo-out/run               # a trained run
    python benchmarks/export_benchmark.py --encoder vit-s --decoder semfpn    # random weights, 512x512

A model given by name is built with random weights (speed does not depend on them) and saved to
a temporary run folder whose source domain is the synthetic data under --data (written if absent).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gkd_deploy.evaluation.settings import ValidateSettings
from gkd_deploy.evaluation.validation import validate_export
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir
from gkd_deploy.runtime.loader import load_predictor


def synthetic_data(folder: Path) -> tuple[Path, Path]:
    from gkd_deploy.data.synthetic import write_synthetic

    if not (folder / "cityscapes-synth").is_dir():
        write_synthetic(folder, train=64, val=8, target=8)
    return folder / "cityscapes-synth", folder / "acdc-synth"


def latency_ms(predictor, size: tuple[int, int], runs: int) -> float:
    images = torch.rand(1, 3, *size) * 255
    for _ in range(3):
        predictor(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a run folder (default: build --encoder + --decoder)")
    parser.add_argument("--encoder", default="vit-s")
    parser.add_argument("--decoder", default="semfpn")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--data", default="benchmark-data", help="synthetic data folder (written if absent)")
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args()
    source, targets = synthetic_data(Path(args.data))
    with tempfile.TemporaryDirectory() as scratch:
        run_path = Path(args.model) if args.model else Path(scratch) / "run"
        if not args.model:
            run = RunDir(run_path)
            model = build_segmenter(SegmenterConfig(args.encoder, decoder=args.decoder, img_size=args.size))
            save_segmenter(model, run.segmenter_checkpoint)
            write_yaml(run.config_path, {"source": f"cityscapes={source}"})
        started = time.perf_counter()
        outcome = export_model(run_path, precisions=("fp32", "fp16", "int8"), calib=f"cityscapes={source}",
                               calib_count=args.calib_count, out_dir=Path(scratch) / "export")
        print(f"model {outcome.checkpoint}, export of all precisions {time.perf_counter() - started:.1f} s, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        fp32_ms = None
        for file in outcome.files:
            predictor = load_predictor(file.path, device="cpu")
            ms = latency_ms(predictor, predictor.info.input_size, args.runs)
            fp32_ms = fp32_ms or ms
            line = (f"{file.precision}: {file.size_bytes / 1e6:7.2f} MB, export {file.seconds:5.1f} s, "
                    f"ORT CPU batch 1 {ms:8.1f} ms ({fp32_ms / ms:4.2f}x fp32), {file.parity}")
            if not args.no_validate:
                report = validate_export(file.path, f"acdc={targets}", ValidateSettings(workers=0)).report
                line += " | mIoU delta " + ", ".join(f"{d.domain} {d.delta:+.2f}" for d in report.domains)
            print(line, flush=True)


if __name__ == "__main__":
    main()
