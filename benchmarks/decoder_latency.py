"""Decoder cost at deployment size: parameters, FLOPs and forward latency of the whole segmenter.

    python benchmarks/decoder_latency.py                          # vit-s + each decoder, 512x512, CPU
    python benchmarks/decoder_latency.py --device cuda --batch 1  # the same on a GPU

Weights are random (`pretrained=False`); speed does not depend on them. FLOPs are counted with
`torch.utils.flop_counter` (grid_sample, used by Mask2Former's deformable attention, is not
counted, so its figure is a slight underestimate).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vit-s")
    parser.add_argument("--decoders", default="semfpn,mask2former-edge,mask2former")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{args.encoder} at {args.size}x{args.size}, batch {args.batch}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    for decoder in args.decoders.split(","):
        model = build_segmenter(SegmenterConfig(args.encoder, decoder=decoder, img_size=args.size)).to(device).eval()
        images = torch.rand(args.batch, 3, args.size, args.size, device=device) * 255
        decoder_params = sum(p.numel() for p in model.decoder.parameters())
        # FLOPs under no_grad: the flop counter's module hooks do not accept inference-mode tensors.
        with torch.no_grad():
            features = model.encoder.forward_features(images)
            with FlopCounterMode(display=False) as decoder_flops:
                model.decoder(features)
            with FlopCounterMode(display=False) as total_flops:
                model(images)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(images)
            times = []
            for _ in range(args.runs):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(images)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        print(f"{decoder:<18} decoder {decoder_params / 1e6:6.2f} M params {decoder_flops.get_total_flops() / 1e9 / args.batch:7.1f} "
              f"GFLOP/img | segmenter {total_flops.get_total_flops() / 1e9 / args.batch:7.1f} GFLOP/img, "
              f"latency median {statistics.median(times) * 1000:8.1f} ms (min {min(times) * 1000:.1f})", flush=True)


if __name__ == "__main__":
    main()
