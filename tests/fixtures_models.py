"""A tiny seeded segmenter in a run folder, as `gkd train` leaves one: for tests of what comes after
training (export, runtime, infer, benchmark)."""

from __future__ import annotations

from pathlib import Path

import torch

from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir

SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}


def tiny_run(root: Path, config: dict | None = None, seed: int = 0) -> RunDir:
    """tiny-student + a small SemFPN at 64 x 64, random weights of `seed`; `config` is its config.yaml."""
    run = RunDir(root)
    torch.manual_seed(seed)
    model = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64, decoder_options=SMALL_FPN))
    save_segmenter(model, run.segmenter_checkpoint)
    write_yaml(run.config_path, config if config is not None else {"targets": []})
    return run
