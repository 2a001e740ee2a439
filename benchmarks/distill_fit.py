"""Can the student fit the teacher at all? Each distillation objective trained on ONE fixed batch.

    python benchmarks/distill_fit.py                                  # effnet-lite0 -> tiny-student
    python benchmarks/distill_fit.py --student vit-t --methods qsd,mse

No generalisation is asked here: the same 16 synthetic source images (clean, no augmentation or
masking randomness beyond the objective's own) are shown at every step, so the loss measures how
well the objective lets the student reproduce the teacher's tokens, i.e. optimisation and
capacity only. Printed per method and step: the feature term (the error on the teacher's
normalised patch tokens, plus the CLS slot for the three-term objectives; 1.0 is what predicting
each token's mean gives), and the other terms where the objective has them. Same student
initialisation (seed), data, rate and steps for every method.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.distill.gkd import Distiller
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.distill.methods import MethodInputs, build_objective
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.training.optim import adamw


def fixed_batch(folder: Path, count: int, size: int) -> torch.Tensor:
    """`count` synthetic source images, short side resized to `size`, centre crop size x size, 0..255."""
    files = sorted((folder / "cityscapes-synth" / "leftImg8bit" / "train").rglob("*.png"))[:count]
    images = []
    for file in files:
        image = Image.open(file).convert("RGB")
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        images.append(torch.from_numpy(np.array(image.crop((left, top, left + size, top + size)))).permute(2, 0, 1))
    return torch.stack(images).float()


def fit(method: str, args: argparse.Namespace, images: torch.Tensor) -> list[tuple[int, dict[str, float]]]:
    torch.manual_seed(args.seed)
    student = create_encoder(args.student, pretrained=False, img_size=args.img_size, patch_size=args.patch_size,
                             role="student")
    teacher = create_encoder(args.teacher, pretrained=True, img_size=args.img_size, patch_size=args.patch_size,
                             role="teacher")
    objective = build_objective(method, student, teacher, MethodInputs(
        student.embed_dim, teacher.embed_dim, student.grid_size(args.img_size, args.img_size)))
    model = Distiller(student, teacher, objective).train()
    optimizer = adamw(model.trainable_modules(), args.lr, 0.05)
    history = []
    for step in range(args.steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            losses = model(images, BatchRandom.single(len(images), seed=step))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if step % args.every == 0 or step == args.steps - 1:
            history.append((step, {name: float(value.detach()) for name, value in losses.items()}))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="effnet-lite0")
    parser.add_argument("--student", default="tiny-student")
    parser.add_argument("--methods", default="qsd,mse,fitnets")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--data", type=Path, default=None, help="a folder `gkd data synthetic` wrote (else a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch)
            write_synthetic(data, train=args.images, val=1, target=1, size=(512, 256), seed=0)
        images = fixed_batch(data, args.images, args.img_size)
    print(f"{args.teacher} -> {args.student}, one fixed batch of {len(images)} at {args.img_size} px, "
          f"patch {args.patch_size}, AdamW {args.lr:g}, {args.steps} steps")
    for method in (m.strip() for m in args.methods.split(",") if m.strip()):
        started = time.perf_counter()
        for step, losses in fit(method, args, images):
            terms = "  ".join(f"{name} {value:.3f}" for name, value in losses.items() if name != "loss")
            print(f"{method:>8} step {step:4d}: {terms}")
        print(f"{method:>8}: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
