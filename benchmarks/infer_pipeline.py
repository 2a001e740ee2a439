"""Pipeline overhead of `gkd infer`: frames per second end to end on a clip (decode, resize, model,
argmax, render, encode) against the model's bare throughput on the same batch of random inputs.

    python benchmarks/infer_pipeline.py --model demo-out/run/export/model-fp32.onnx
    python benchmarks/infer_pipeline.py --model demo-out/run --clip demo-out/data/video/synth-fog.mp4 --batch 1,4

Without --clip a synthetic driving clip (48 frames, 512x256) is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from gkd_deploy.benchmark.timing import TimingPolicy, WallClock, measure_latency
from gkd_deploy.infer import InferSettings, infer
from gkd_deploy.infer.segment import FrameSegmenter
from gkd_deploy.infer.sources import open_source
from gkd_deploy.runtime.loader import load_predictor


def bare_fps(model: str, input_size: tuple[int, int], batch: int, seconds: float) -> float:
    """Frames per second of the predictor alone on (batch, 3, H, W) random inputs (median latency),
    timed as `gkd benchmark` times it."""
    predictor = load_predictor(model)
    images = torch.rand(batch, 3, *input_size) * 255
    stats = measure_latency(lambda: predictor(images), WallClock(), TimingPolicy(warmup=3, min_runs=5,
                                                                                 min_seconds=seconds))
    return batch * 1000 / stats.p50_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="run folder, checkpoint, .onnx file or engine")
    parser.add_argument("--clip", help="video to run on (default: a synthetic 48-frame clip)")
    parser.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget of each bare measurement")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip
        if clip is None:
            from gkd_deploy.data.synthetic import write_synthetic

            clip = write_synthetic(Path(tmp) / "data", train=0, val=0, target=0, video=True, video_frames=48).video
        first = next(iter(open_source(clip)))
        segmenter = FrameSegmenter(load_predictor(args.model))
        input_size = segmenter.input_size(first.image.shape[:2])
        rows = []
        for batch in (int(b) for b in args.batch.split(",")):
            bare = bare_fps(args.model, input_size, batch, args.seconds)
            infer(clip, args.model, InferSettings(out=Path(tmp) / "warm.mp4", batch=batch, max_frames=2 * batch))
            result = infer(clip, args.model, InferSettings(out=Path(tmp) / f"out-{batch}.mp4", batch=batch))
            stats = result.stats
            rows.append({"batch": batch, "frames": stats.processed, "input_size": list(input_size),
                         "bare_fps": round(bare, 2), "pipeline_fps": round(stats.fps, 2),
                         "model_fps_in_pipeline": round(stats.model_fps, 2),
                         "overhead_pct": round(100 * (1 - stats.fps / bare), 1),
                         "decode_s": round(stats.decode_seconds, 3), "segment_s": round(stats.segment_seconds, 3),
                         "model_s": round(stats.model_seconds, 3), "write_s": round(stats.write_seconds, 3),
                         "wall_s": round(stats.seconds, 3)})
    print(f"model {args.model}, clip {clip} ({first.image.shape[1]}x{first.image.shape[0]}), "
          f"model input {input_size[1]}x{input_size[0]}, torch threads {torch.get_num_threads()}")
    print(f"{'batch':>5} {'frames':>6} {'bare fps':>9} {'pipeline fps':>12} {'overhead':>8} "
          f"{'decode s':>8} {'segment s':>9} {'model s':>7} {'write s':>7} {'wall s':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['frames']:>6} {r['bare_fps']:>9.1f} {r['pipeline_fps']:>12.1f} "
              f"{r['overhead_pct']:>7.1f}% {r['decode_s']:>8.3f} {r['segment_s']:>9.3f} {r['model_s']:>7.3f} "
              f"{r['write_s']:>7.3f} {r['wall_s']:>6.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "clip": str(clip), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
