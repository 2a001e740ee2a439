"""int8 instance files against PyTorch: the export check's numbers (instances found, mean mask
IoU, score difference) and `gkd validate`'s mask-AP delta, per int8 target and remainder, beside
fp32 and fp16.

    python benchmarks/instance_int8.py --out runs/instance-int8                  # 3 images, 60 steps
    python benchmarks/instance_int8.py --out runs/instance-int8 --val-images 16 --steps 200

The model is the test suite's tiny instance segmenter (tiny-student, DPT neck, a 6-query
Mask2Former 32 wide, top 20), overfitted to the synthetic Cityscapes val images at 128 x 64 for
`--steps` steps: a "trained-ish" model that finds some instances with confident scores. The
calibration, check and validation images are those same images (what `gkd export` and `gkd
validate` take by default for a run), so the numbers say how far int8 moves this model, not how
well it segments. Each file is exported by `export_model` (its parity check must pass for the
row to appear; a failed check is printed as such) and validated by `validate_export`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gkd_deploy.data.instances import CityscapesInstanceDataset
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import ExportError
from gkd_deploy.evaluation.settings import ValidateSettings
from gkd_deploy.evaluation.validation import validate_export
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.instance import InstanceCriterion
from gkd_deploy.models.checkpoint import save_instance_segmenter
from gkd_deploy.models.config import InstanceSegmenterConfig
from gkd_deploy.models.instance_segmenter import build_instance_segmenter

HEIGHT, WIDTH = 64, 128
DECODER = {"hidden_dim": 32, "num_queries": 6, "dec_layers": 2, "pixel_layers": 1, "num_heads": 4,
           "num_points_deform": 2, "dim_feedforward": 64, "pixel_ffn": 64, "groups": 4, "num_points": 256}
# (precision, int8 target, remainder, quantize_sensitive): the rows.
ROWS = (("fp32", "tensorrt", None, False), ("fp16", "tensorrt", None, False), ("int8", "tensorrt", "fp16", False),
        ("int8", "tensorrt", "fp32", False), ("int8", "onnxruntime", "fp32", False), ("int8", "tensorrt", "fp16", True))


def trained_checkpoint(out: Path, images: int, steps: int, seed: int) -> tuple[Path, str]:
    """(checkpoint, data spec) of the tiny model overfitted to `images` synthetic val images (the
    one an earlier run left in `out`, if any)."""
    root = out / "data"
    if not (root / "cityscapes-synth").is_dir():
        write_synthetic(root, train=0, val=images, target=0, size=(WIDTH, HEIGHT), seed=3, workers=1)
    data, checkpoint = f"cityscapes={root / 'cityscapes-synth'}", out / "instance.safetensors"
    if checkpoint.is_file():
        print(f"the model trained by an earlier run: {checkpoint}")
        return checkpoint, data
    dataset = CityscapesInstanceDataset(root / "cityscapes-synth", "val")
    samples = [dataset[i] for i in range(len(dataset))]
    batch = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    targets = [(torch.from_numpy(s.target.classes), torch.from_numpy(s.target.masks)) for s in samples]
    torch.manual_seed(seed)
    config = InstanceSegmenterConfig(encoder="tiny-student", neck="dpt", neck_channels=32, decoder_options=DECODER,
                                     img_size=64, projection_dim=16, top_k=20)
    model = build_instance_segmenter(config).train()
    criterion = InstanceCriterion(config.class_set.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    started = time.perf_counter()
    for _ in range(steps):
        loss = criterion(model.forward_train(batch), targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained {steps} steps on {len(samples)} images in {time.perf_counter() - started:.0f} s "
          f"(last loss {loss.item():.3f})")
    return save_instance_segmenter(model.eval(), checkpoint), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/instance-int8"))
    parser.add_argument("--val-images", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint, data = trained_checkpoint(args.out, args.val_images, args.steps, args.seed)
    print("| file | target | remainder | instances found | mean mask IoU | max score diff | mask AP (PyTorch) "
          "| mask AP (file) | delta |")
    print("|---|---|---|---|---|---|---|---|---|")
    for precision, target, remainder, sensitive in ROWS:
        name = f"{precision}-{target}-{remainder}{'-sensitive' if sensitive else ''}"
        try:
            outcome = export_model(checkpoint, precisions=(precision,), input_size=(HEIGHT, WIDTH), calib=(data,),
                                   calib_count=args.val_images, check_count=args.val_images, target=target,
                                   remainder=remainder, quantize_sensitive=sensitive, out_dir=args.out / name)
        except ExportError as error:
            print(f"| {precision}{' sensitive' if sensitive else ''} | {target} | {remainder or '-'} | "
                  f"failed its check: {str(error).split(': ', 1)[1].split(' (')[0]} | | | | | |")
            continue
        file = outcome.files[-1]
        parity = file.parity
        domain = validate_export(file.path, data, ValidateSettings(workers=0)).report.domains[0]
        print(f"| {precision}{' sensitive' if sensitive else ''} | {target} | {remainder or '-'} | "
              f"{parity.matched:.1f}% of {parity.instances} | {parity.pixel_agreement:.2f}% | {parity.max_abs_diff:.3g} "
              f"| {domain.reference_miou:.2f} | {domain.exported_miou:.2f} | {domain.delta:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
