"""Training-step throughput of the GKD stages: images/s, step time, peak memory, FLOPs.

    python benchmarks/train_throughput.py                                   # CPU, tiny models
    python benchmarks/train_throughput.py --teacher dinov2-b --student vit-s --img-size 512 \
        --batch auto --device cuda --peak-tflops 989 --methods qsd,mse,fitnets,cwd   # one H200, bf16

Measures the real training step (the distiller / task objective of `gkd train`, AdamW, autocast)
on random images, so data loading is left out. `--methods` times each distillation method side by
side (QSD against `mse`, the same three terms with plain projection heads, shows what QSD's
attention costs); `--batch auto` (CUDA) doubles the batch from 16 until it no longer fits and
uses the largest that did. Weights are random (`pretrained=False`): speed does not depend on them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gkd_deploy.distill.gkd import Distiller
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.distill.methods import MethodInputs, build_objective
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.training.loop import autocast_for
from gkd_deploy.training.optim import adamw
from gkd_deploy.training.stages import TaskObjective


def training_step(loss_fn, optimizer, device):
    """One optimisation step (forward under autocast, backward, update) as a callable to time."""

    def step():
        with autocast_for(device):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def distill_step_fn(args, device, method, batch):
    student = create_encoder(args.student, pretrained=False, img_size=args.img_size, patch_size=args.patch_size)
    teacher = create_encoder(args.teacher, pretrained=False, img_size=args.img_size, patch_size=args.patch_size)
    objective = build_objective(method, student, teacher, MethodInputs(
        student.embed_dim, teacher.embed_dim, student.grid_size(args.img_size, args.img_size)))
    model = Distiller(student, teacher, objective).to(device).train()
    optimizer = adamw(model.trainable_modules(), 1e-4, 0.05)
    images = torch.rand(batch, 3, args.img_size, args.img_size, device=device) * 255
    random = BatchRandom.single(batch)

    return training_step(lambda: model(images, random)["loss"], optimizer, device)


def task_step_fn(args, device, batch):
    segmenter = build_segmenter(SegmenterConfig(args.student, decoder=args.decoder, img_size=args.img_size,
                                                patch_size=args.patch_size, decoder_options=args.decoder_options))
    task = TaskObjective(segmenter, train_encoder=False).to(device).train()
    optimizer = adamw(segmenter.decoder, 1e-4, 0.05)
    images = torch.rand(batch, 3, args.img_size, args.img_size, device=device) * 255
    labels = torch.randint(0, 19, (batch, args.img_size, args.img_size), device=device)
    random = BatchRandom.single(batch)

    return training_step(lambda: task(images, labels, random)["loss"], optimizer, device)


def largest_batch(make_step, device, start: int = 16, limit: int = 4096) -> int:
    """The largest power-of-two batch (from `start`) whose training step fits in GPU memory."""
    best, batch = 0, start
    while batch <= limit:
        try:
            step = make_step(batch)
            step()
            torch.cuda.synchronize()
            best = batch
        except torch.OutOfMemoryError:
            break
        finally:
            step = None
            torch.cuda.empty_cache()
        batch *= 2
    if best == 0:
        raise SystemExit(f"not even a batch of {start} fits on {device}")
    return best


def measure(name, step, args, device, batch):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:
        step()
    flops_per_image = counter.get_total_flops() / batch
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
    images_per_s = batch / median
    line = (f"{name:<24} batch {batch:4d}  step {median * 1000:8.1f} ms  {images_per_s:8.1f} img/s  "
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
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--batch", default="8", help="images per step, or 'auto' (CUDA): the largest that fits")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decoder", default="semfpn")
    parser.add_argument("--small-decoder", action="store_true", help="SemFPN with 64/32 channels (tiny runs)")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak, for the share reached")
    parser.add_argument("--methods", default="qsd,mse", help="distillation methods to time side by side")
    parser.add_argument("--stages", default="2,3", help="distillation (1/2: same step) and/or task (3)")
    args = parser.parse_args()
    args.decoder_options = {"neck_channels": 64, "head_channels": 32, "groups": 8} if args.small_decoder else {}
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"{args.teacher} -> {args.student} at {args.img_size}px (patch {args.patch_size}), {device}"
          f"{' bf16 autocast' if device.type == 'cuda' else ' fp32'}, torch {torch.__version__}"
          f", {torch.get_num_threads()} CPU threads")
    stages = {int(s) for s in args.stages.split(",")}
    auto = args.batch == "auto"
    if auto and device.type != "cuda":
        raise SystemExit("--batch auto finds the largest batch that fits in GPU memory: use it with --device cuda")

    def batch_for(make_step):
        return largest_batch(make_step, device) if auto else int(args.batch)

    medians = {}
    if stages & {1, 2}:
        for method in args.methods.split(","):
            batch = batch_for(lambda b, m=method: distill_step_fn(args, device, m, b))
            medians[method] = (measure(f"distill ({method})", distill_step_fn(args, device, method, batch), args,
                                       device, batch), batch)
        if "qsd" in medians and "mse" in medians and medians["qsd"][1] == medians["mse"][1]:
            print(f"QSD overhead over the same terms with projection heads (mse): "
                  f"{(medians['qsd'][0] / medians['mse'][0] - 1) * 100:+.1f}% step time")
    if 3 in stages:
        batch = batch_for(lambda b: task_step_fn(args, device, b))
        measure(f"task ({args.decoder}, frozen)", task_step_fn(args, device, batch), args, device, batch)


if __name__ == "__main__":
    main()
