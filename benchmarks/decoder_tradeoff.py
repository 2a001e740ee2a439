"""Accuracy against speed of the stage-3 decoders on the synthetic domains.

    python benchmarks/decoder_tradeoff.py --data benchmark-data --steps 150

Trains stage 3 (frozen encoder, decoder only) once per decoder with the same encoder, data order
and schedule, then prints source and target mIoU with the decoder's parameters and the
segmenter's CPU latency at the training crop. The encoder is `--student` with random weights
unless `--student-weights` names a file, so absolute scores are low; the comparison is the point.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gkd_deploy.models.checkpoint import load_segmenter
from gkd_deploy.training.config import TaskSettings, TrainConfig
from gkd_deploy.training.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="benchmark-data")
    parser.add_argument("--decoders", default="semfpn,mask2former-edge,mask2former")
    parser.add_argument("--student", default="tiny-student")
    parser.add_argument("--student-weights", default=None)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "cityscapes-synth").is_dir():
        from gkd_deploy.data.synthetic import write_synthetic

        write_synthetic(data, train=64, val=8, target=8)
    for decoder in args.decoders.split(","):
        config = TrainConfig(
            student=args.student, pretrained=False, student_weights=args.student_weights, stages=(3,),
            source=f"cityscapes={data / 'cityscapes-synth'}",
            targets=(f"cityscapes={data / 'cityscapes-synth'}", f"acdc={data / 'acdc-synth'}"),
            stage3=TaskSettings(steps=args.steps, batch_size=args.batch, crop_size=args.crop, lr=1e-3,
                                warmup_steps=10, decoder=decoder),
            workers=2, log_every=args.steps, checkpoint_every=args.steps)
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            result = train(config, Path(scratch) / "run")
            seconds = time.perf_counter() - started
            model = load_segmenter(result.run.segmenter_checkpoint).eval()
            images = torch.rand(1, 3, args.crop, args.crop) * 255
            with torch.inference_mode():
                for _ in range(3):
                    model(images)
                times = []
                for _ in range(10):
                    start = time.perf_counter()
                    model(images)
                    times.append(time.perf_counter() - start)
        report = result.evaluation.report
        scores = ", ".join(f"{d.domain} {d.miou:.2f}" for d in report.domains)
        params = sum(p.numel() for p in model.decoder.parameters()) / 1e6
        print(f"{decoder:<18} {params:6.2f} M decoder params, train {seconds:6.1f} s, "
              f"CPU latency {statistics.median(times) * 1000:7.1f} ms at {args.crop}px | mIoU {scores}", flush=True)


if __name__ == "__main__":
    main()
