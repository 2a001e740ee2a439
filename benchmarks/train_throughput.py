"""Training-step throughput of the GKD stages: images/s, step time, peak memory, FLOPs.

    python benchmarks/train_throughput.py                                   # CPU, tiny models
    python benchmarks/train_throughput.py --teacher dinov2-b --student vit-s --img-size 512 \
        --batch 64 --device cuda --peak-tflops 989                          # one H100, bf16

Measures the real training step (the distiller / frozen-encoder task of `gkd train`, AdamW,
autocast) on random images, so data loading is left out; `--compare-mse` also times plain
projected-feature MSE distillation to show what QSD's attention costs. Weights are random
(`pretrained=False`): speed does not depend on them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gkd_deploy.distill.gkd import GKDDistiller
from gkd_deploy.distill.masking import random_patch_mask
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.training.loop import autocast_for
from gkd_deploy.training.optim import adamw
from gkd_deploy.training.stages import FrozenEncoderTask


def training_step(loss_fn, optimizer, device):
    """One optimisation step (forward under autocast, backward, update) as a callable to time."""

    def step():
        with autocast_for(device):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def distill_step_fn(args, device, head):
    student = create_encoder(args.student, pretrained=False, img_size=args.img_size)
    teacher = create_encoder(args.teacher, pretrained=False, img_size=args.img_size)
    model = GKDDistiller(student, teacher, head=head).to(device).train()
    optimizer = adamw(model.trainable_modules(), 1e-4, 0.05)
    images = torch.rand(args.batch, 3, args.img_size, args.img_size, device=device) * 255
    patches = (args.img_size // 16) ** 2
    mask = random_patch_mask(args.batch, patches, 0.5, 0.5, torch.Generator().manual_seed(0)).to(device)

    return training_step(lambda: model(images, mask)["loss"], optimizer, device)


def task_step_fn(args, device):
    segmenter = build_segmenter(SegmenterConfig(args.student, decoder=args.decoder, img_size=args.img_size,
                                                decoder_options=args.decoder_options))
    task = FrozenEncoderTask(segmenter).to(device).train()
    optimizer = adamw(segmenter.decoder, 1e-4, 0.05)
    images = torch.rand(args.batch, 3, args.img_size, args.img_size, device=device) * 255
    labels = torch.randint(0, 19, (args.batch, args.img_size, args.img_size), device=device)

    return training_step(lambda: task(images, labels)["loss"], optimizer, device)


def measure(name, step, args, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:
        step()
    flops_per_image = counter.get_total_flops() / args.batch
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    images_per_s = args.batch / median
    line = (f"{name:<24} step {median * 1000:8.1f} ms  {images_per_s:8.1f} img/s  "
            f"{flops_per_image / 1e9:8.1f} GFLOP/img  peak {'GPU' if device.type == 'cuda' else 'RSS'} {peak:6.2f} GiB")
    if args.peak_tflops:
        line += f"  {flops_per_image * images_per_s / (args.peak_tflops * 1e12) * 100:5.1f}% of peak"
    print(line, flush=True)
    return median


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="tiny-teacher")
    parser.add_argument("--student", default="tiny-student")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decoder", default="semfpn")
    parser.add_argument("--small-decoder", action="store_true", help="SemFPN with 64/32 channels (tiny runs)")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak, for the share reached")
    parser.add_argument("--compare-mse", action="store_true", help="also time plain MSE distillation")
    parser.add_argument("--stages", default="2,3", help="distillation (1/2: same step) and/or task (3)")
    args = parser.parse_args()
    args.decoder_options = {"neck_channels": 64, "head_channels": 32, "groups": 8} if args.small_decoder else {}
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"{args.teacher} -> {args.student} at {args.img_size}px, batch {args.batch}, {device}"
          f"{' bf16 autocast' if device.type == 'cuda' else ' fp32'}, torch {torch.__version__}"
          f", {torch.get_num_threads()} CPU threads")
    stages = {int(s) for s in args.stages.split(",")}
    if stages & {1, 2}:
        qsd = measure("distill (QSD)", distill_step_fn(args, device, "qsd"), args, device)
        if args.compare_mse:
            mse = measure("distill (plain MSE)", distill_step_fn(args, device, "mse"), args, device)
            print(f"QSD overhead over plain MSE: {(qsd / mse - 1) * 100:+.1f}% step time")
    if 3 in stages:
        measure(f"task ({args.decoder}, frozen)", task_step_fn(args, device), args, device)


if __name__ == "__main__":
    main()
