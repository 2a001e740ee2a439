"""Does GKD carry a real teacher's robustness into a small student? The paper's Table 1 in miniature.

    python benchmarks/gkd_miniature.py --out runs/miniature                 # 2 CPU cores, about an hour
    python benchmarks/gkd_miniature.py --out runs/miniature --camvid ../shared/data/camvid-val

The teacher is a real pretrained network that works offline: EfficientNet-Lite0 with its ImageNet
weights from pip (`effnet-lite0`). The student is a small ViT from random initialisation (no ViT
weights reach an offline machine). Data: the built-in synthetic street scenes. Stage 1 distils
on a proxy set of other scenes in random camera looks and no weather (`gkd data synthetic
--proxy`), stage 2 on the source (clear) images, stage 3 trains a SemFPN decoder on the source
labels; every row is scored on the four synthetic target conditions (fog, night, rain, snow) and,
when `--camvid` names the CamVid validation photographs in the Cityscapes layout, on real
street photographs (their native 480 x 360, averaged over the 11 classes they label).

Rows (`gkd compare` methods), one student architecture, budget and three seeds: the teacher
reference (frozen teacher + the same decoder), the student from scratch, one-stage KD (eq. 3),
the two-stage projected-MSE variant, FitNets, CWD and GKD. Every setting is in the YAML file
this script writes next to the runs; nothing is tuned on CamVid (it is only ever scored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml

from gkd_deploy.compare import CompareSettings, run_compare
from gkd_deploy.compare.report import CompareReport
from gkd_deploy.compare.runner import load_base_config
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.devices import cpu_has_bf16

METHODS = ("teacher", "source-only", "one-stage-kd", "two-stage-mse", "fitnets", "cwd", "gkd")
SYNTHETIC_TARGETS = ("acdc-fog", "acdc-night", "acdc-rain", "acdc-snow")


def base_settings(data: Path, camvid: Path | None, args: argparse.Namespace) -> dict:
    """The shared training config: what every row of the table is trained and scored with."""
    targets: list = [f"acdc={data / 'acdc-synth'}"]
    if camvid is not None:
        targets.append({"data": f"cityscapes:camvid={camvid}", "eval_size": "native", "score_classes": "labelled"})
    distill = {"steps": args.distill_steps, "batch_size": 32, "base_lr": args.distill_lr * 512 / 32,
               "min_lr": 1e-5, "ema": False}
    return {
        "teacher": args.teacher, "student": args.student, "pretrained": True,
        "proxy": f"images={data / 'proxy-synth'}",
        "source": f"cityscapes={data / 'cityscapes-synth'}",
        "targets": targets,
        # The authors' patch sizes: stage 1 at patch 14 (112 px, 8 x 8 tokens), stages 2-3 at 16 (128 px).
        "stage1": {**distill, "img_size": 112, "patch_size": 14},
        "stage2": {**distill, "img_size": 128, "patch_size": 16},
        "stage3": {"steps": args.task_steps, "batch_size": 16, "crop_size": 128, "patch_size": 16,
                   # The synthetic images are 512 x 256: their native short side is the resize base.
                   "short_side": 256, "lr": 2e-3, "decoder": "semfpn",
                   "decoder_options": {"neck_channels": 64, "head_channels": 32, "groups": 8},
                   # Students train from random weights here: where a row trains its encoder in
                   # stage 3 it does so at the decoder's rate (not the paper's 1/10 for a pretrained one).
                   "encoder_lr": 2e-3},
        "autocast": args.autocast, "workers": args.workers, "checkpoint_every": 1000, "log_every": 50,
    }


def write_data(out: Path, args: argparse.Namespace) -> Path:
    data = out / "data"
    if not (data / "cityscapes-synth").is_dir():
        write_synthetic(data, train=args.train, val=50, target=args.target, size=(512, 256), seed=0)
    if not (data / "proxy-synth").is_dir():
        # Proxy images are cropped to 112 px anyway: rendered smaller, they decode four times faster.
        write_synthetic(data, train=0, val=0, target=0, proxy=args.proxy, size=(256, 128), seed=0)
    return data


def summarise(report: CompareReport, camvid: bool) -> list[dict]:
    """Per method: mean +- std over seeds of the synthetic-target average and of CamVid, and their
    share of the teacher reference's."""
    def per_seed(method: str, domains: tuple[str, ...]) -> list[float]:
        return [statistics.fmean(s.domains[d] for d in domains) for s in report.runs(method)]

    groups = {"synthetic": SYNTHETIC_TARGETS, **({"camvid": ("camvid",)} if camvid else {})}
    teacher = {g: statistics.fmean(per_seed("teacher", d)) if report.runs("teacher") else float("nan")
               for g, d in groups.items()}
    rows = []
    for method in report.methods:
        row = {"method": method}
        for group, domains in groups.items():
            values = per_seed(method, domains)
            row[group] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan"))
            row[f"{group}_vs_teacher"] = row[group][0] / teacher[group]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--camvid", type=Path, default=None, help="CamVid val in the Cityscapes layout (scored only)")
    parser.add_argument("--teacher", default="effnet-lite0")
    parser.add_argument("--student", default="tiny-student")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=200, help="source training images")
    parser.add_argument("--target", type=int, default=50, help="images per synthetic target condition")
    parser.add_argument("--proxy", type=int, default=1000, help="proxy images for stage 1")
    parser.add_argument("--distill-steps", type=int, default=300, help="steps of each distillation stage (batch 32)")
    parser.add_argument("--distill-lr", type=float, default=1e-3, help="peak AdamW rate of stages 1-2 at batch 32")
    parser.add_argument("--task-steps", type=int, default=300, help="stage-3 steps (batch 16)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--autocast", choices=("auto", "bf16", "off"), default=None,
                        help="default: bf16 where the CPU computes it natively (the published table), else auto "
                             "(fp32 on CPU): emulated bf16 is about 14x slower")
    args = parser.parse_args()
    if args.autocast is None:
        args.autocast = "bf16" if cpu_has_bf16() else "auto"
    print(f"autocast: {args.autocast}", flush=True)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = write_data(args.out, args)
    settings = base_settings(data, args.camvid, args)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    seeds = tuple(int(s) for s in args.seeds.split(","))
    config_path = args.out / "miniature.yaml"
    config_path.write_text(yaml.safe_dump({**settings, "compare": {"methods": list(methods), "seeds": list(seeds)}},
                                          sort_keys=False))
    base, _ = load_base_config(str(config_path), {}, None)

    def announce(run, index, total, status):
        print(f"[{time.perf_counter() - started:7.0f} s] {index + 1}/{total} {run.method} seed {run.seed}: {status}",
              flush=True)

    report = run_compare(base, CompareSettings(methods=methods, seeds=seeds), args.out / "compare", on_run=announce)
    minutes = (time.perf_counter() - started) / 60
    rows = summarise(report, args.camvid is not None)
    (args.out / "miniature.json").write_text(json.dumps({"minutes": minutes, "rows": rows, "config": str(config_path)},
                                                        indent=2))
    print(f"\n{len(report.scores)} runs in {minutes:.1f} min; config {config_path}")
    header = "| method | synthetic targets (mean of 4) | x teacher |" + (" CamVid (11 classes) | x teacher |" if args.camvid else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [row["method"], f"{row['synthetic'][0]:.1f} ± {row['synthetic'][1]:.1f}", f"{row['synthetic_vs_teacher']:.2f}"]
        if args.camvid:
            cells += [f"{row['camvid'][0]:.1f} ± {row['camvid'][1]:.1f}", f"{row['camvid_vs_teacher']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    print("\nper domain:", args.out / "compare" / "compare.csv")


if __name__ == "__main__":
    main()
