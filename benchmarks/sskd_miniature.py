"""Semi-supervised instance distillation (SSKD) in miniature: the paper's Table 3 on the built-in data.

    python benchmarks/sskd_miniature.py --out runs/sskd-miniature --threads 1   # sized for about an hour on 2 cores
    python benchmarks/sskd_miniature.py --out runs/sskd-large --scale large --device cuda   # one GPU
    python benchmarks/sskd_miniature.py --out runs/sskd-miniature --samplers uniform,memory-bank   # + sampler rows

Data: the synthetic street scenes in the Cityscapes layout with their instance ids; 10 % of the
train split labelled, the rest the unlabelled pool; scored by COCO mask AP / AP50 on the val split
(the paper's Cityscapes setting). Per seed, three runs of one teacher and one student architecture:
`sskd` (teacher fine-tuned, pool pseudo-labelled, teacher re-initialised and self-trained; student
distilled with the unified loss; student refined on the labels), `sskd-no-adaptation` (the teacher
fine-tuned only: the same fine-tuning as the full run's, whose result it reuses) and `supervised` (the student on the labels alone, for the distilled student's
transfer + refinement steps). Rows, mean +- std over the seeds:

    supervised-only student | + distillation (student after transfer) | + refinement (full) |
    without teacher adaptation | the adapted teacher

With `--samplers`, the paper's sampler ablation on the same adapted teacher: per variant the full
run's teacher phases and pseudo-labels are reused and only the student is distilled and refined
again, with negatives drawn uniformly, by d^2, sqrt(d), the mask or class descriptor alone, or with
a 10k memory bank of earlier steps' pixels; one row each beside the full run ("instance").

Every setting is in the YAML file written next to the runs. Nothing is tuned on the val split.
Measured: 3 seeds took 51 minutes with one torch thread and one loader process on 2 cores, and
every row scored below 0.3 mask AP (the random-initialised teacher learns too little in 100 steps
to pseudo-label the pool: it keeps almost no instance at score >= 0.3; see the README).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import yaml

from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.evaluation.runner import evaluate_model
from gkd_deploy.evaluation.settings import EvalSettings
from gkd_deploy.run import RunDir
from gkd_deploy.sskd.config import InstanceTrainConfig
from gkd_deploy.sskd.recipes import apply_instance_recipe
from gkd_deploy.training.trainer import train

#: A Mask2Former small enough for 2 CPU cores: 20 queries, 2 decoder layers, 64 wide, 512 loss points per mask.
SMALL_DECODER = {"hidden_dim": 64, "num_queries": 20, "dec_layers": 2, "pixel_layers": 1, "num_heads": 4,
                 "num_points_deform": 4, "dim_feedforward": 128, "pixel_ffn": 128, "groups": 8, "num_points": 512}
SCALES = {
    # teacher, student, train images, val images, image size, crop, steps per phase
    "small": {"teacher": "vit-t", "student": "tiny-student", "train": 200, "val": 40, "size": (256, 128),
              "crop": 128, "finetune": 100, "selftrain": 50, "transfer": 60, "refine": 40},
    "tiny": {"teacher": "tiny-teacher", "student": "tiny-student", "train": 20, "val": 4, "size": (128, 64),
             "crop": 64, "finetune": 4, "selftrain": 3, "transfer": 3, "refine": 3},  # a check that it runs
    "large": {"teacher": "vit-s", "student": "vit-t", "train": 600, "val": 100, "size": (512, 256),
              "crop": 256, "finetune": 1000, "selftrain": 2000, "transfer": 3000, "refine": 600},
}
#: The sampler ablation's variants (the full run is "instance"): config changes of the student's phases.
SAMPLERS = {"uniform": {"negative_sampling": "uniform"}, "squared": {"negative_sampling": "squared"},
            "sqrt": {"negative_sampling": "sqrt"}, "mask": {"negative_sampling": "mask"},
            "class": {"negative_sampling": "class"}, "memory-bank": {"memory_bank": 10_000}}
ROWS = ("supervised-only student", "+ distillation", "+ refinement (full)", "without teacher adaptation",
        "adapted teacher")


def base_config(data: Path, scale: dict, args: argparse.Namespace, seed: int) -> dict:
    model = {"neck": "dpt", "neck_channels": 64, "decoder_options": SMALL_DECODER}
    labelled = {"batch_size": 4, "lr": args.lr, "encoder_lr_scale": 1.0}  # random-initialised encoders
    unified = {"batch_size": 2, "unlabelled_batch_size": 2, "lr": args.lr, "encoder_lr_scale": 1.0}
    return {
        "teacher": {"encoder": scale["teacher"], **model}, "student": {"encoder": scale["student"], **model},
        "pretrained": False,  # no ViT weights reach an offline machine
        "source": f"cityscapes={data / 'cityscapes-synth'}", "targets": f"cityscapes={data / 'cityscapes-synth'}",
        "label_fraction": 0.1,
        "finetune": {**labelled, "steps": scale["finetune"], "weight_decay": 0.01, "schedule": "multistep"},
        "selftrain": {**unified, "steps": scale["selftrain"], "weight_decay": 0.01, "schedule": "multistep"},
        "transfer": {**unified, "steps": scale["transfer"], "clip_grad": 0.1},
        "refine": {**labelled, "steps": scale["refine"], "clip_grad": 0.1},
        "crop_size": scale["crop"], "short_side": scale["size"][1], "img_size": scale["size"][1],
        "num_negatives": 256, "max_anchors": 1024, "projection_dim": 64,
        "seed": seed, "device": args.device, "workers": args.workers, "checkpoint_every": 10_000, "log_every": 50,
    }


def ap_of(checkpoint: Path, targets: list, device: str) -> tuple[float, float]:
    report = evaluate_model(checkpoint, targets, EvalSettings(device=device, json_path=checkpoint.with_suffix(".eval.json"))).report
    (domain,) = report.domains
    return domain.ap, domain.ap50


def sampler_run(out: Path, config: InstanceTrainConfig, full: RunDir, name: str) -> RunDir:
    """The student distilled and refined again with sampler variant `name`, from the full run's
    adapted teacher and pseudo-labels (copied, so the run finds its teacher phases finished)."""
    folder = out / f"sampler-{name}"
    resume = (folder / "config.yaml").is_file()
    if not resume:
        run = RunDir(folder)
        for phase in ("finetune", "selftrain"):
            run.phase_result(phase).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full.phase_result(phase), run.phase_result(phase))
        for phase in ("selftrain", "transfer"):
            run.pseudo_labels(phase).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full.pseudo_labels(phase), run.pseudo_labels(phase))
    variant = apply_instance_recipe(config.merged(SAMPLERS[name]), "sskd")
    return train(None if resume else variant, folder, resume=resume).run


def run_seed(out: Path, base: dict, seed: int, device: str,
             samplers: tuple[str, ...] = ()) -> dict[str, tuple[float, float]]:
    config = InstanceTrainConfig.from_dict(base)
    runs = {}
    for recipe in ("sskd", "sskd-no-adaptation", "supervised"):
        folder = out / f"seed{seed}" / recipe
        resume = (folder / "config.yaml").is_file()
        if recipe == "sskd-no-adaptation" and not resume:
            # Its fine-tuning is the full run's, step for step (same seed and settings): reuse the
            # result, which the run then finds finished.
            finetuned = runs["sskd"].phase_result("finetune")
            target = RunDir(folder).phase_result("finetune")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(finetuned, target)
        runs[recipe] = train(None if resume else apply_instance_recipe(config, recipe), folder, resume=resume).run
    targets = list(config.targets)
    full = runs["sskd"]
    rows = {
        "supervised-only student": ap_of(runs["supervised"].segmenter_checkpoint, targets, device),
        "+ distillation": ap_of(full.phase_result("transfer"), targets, device),
        "+ refinement (full)": ap_of(full.phase_result("refine"), targets, device),
        "without teacher adaptation": ap_of(runs["sskd-no-adaptation"].segmenter_checkpoint, targets, device),
        "adapted teacher": ap_of(full.phase_result("selftrain"), targets, device),
        "fine-tuned teacher (for reference)": ap_of(full.phase_result("finetune"), targets, device),
    }
    if samplers:
        rows["sampler: instance (the full run)"] = rows["+ refinement (full)"]
    for name in samplers:
        rows[f"sampler: {name}"] = ap_of(sampler_run(out / f"seed{seed}", config, full, name).segmenter_checkpoint,
                                         targets, device)
    return rows


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.2f} +- {std:4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samplers", default="",
                        help=f"sampler ablation rows, comma-separated: {', '.join(SAMPLERS)} (default: none)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's); 1 on a machine other jobs share")
    args = parser.parse_args()
    samplers = tuple(name.strip() for name in args.samplers.split(",") if name.strip())
    unknown = [name for name in samplers if name not in SAMPLERS]
    if unknown:
        parser.error(f"unknown sampler {unknown[0]!r}; choose from {', '.join(SAMPLERS)}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    started = time.perf_counter()
    data = args.out / "data"
    if not (data / "cityscapes-synth").is_dir():
        write_synthetic(data, train=scale["train"], val=scale["val"], target=0, size=scale["size"], seed=0)
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        base = base_config(data, scale, args, seed)
        (args.out / "settings.yaml").write_text(yaml.safe_dump({"scale": args.scale, **base}, sort_keys=False))
        for row, value in run_seed(args.out, base, seed, args.device, samplers).items():
            results.setdefault(row, []).append(value)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nSSKD miniature ({args.scale}: teacher {scale['teacher']}, student {scale['student']}, "
          f"{scale['train']} train images, 10 % labelled, {args.seeds} seeds, {minutes:.1f} min)")
    print(f"{'row':38s} {'mask AP':>14s} {'AP50':>14s}")
    for row, values in results.items():
        print(f"{row:38s} {_mean_std([v[0] for v in values]):>14s} {_mean_std([v[1] for v in values]):>14s}")
    (args.out / "table3.json").write_text(json.dumps({"scale": args.scale, "minutes": round(minutes, 1),
                                                      "rows": {k: v for k, v in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
