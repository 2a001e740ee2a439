"""A tiny seeded segmenter in a run folder, as `gkd train` leaves one, and a tiny instance segmenter
with its export: for tests of what comes after training (export, runtime, infer, benchmark)."""

from __future__ import annotations

from pathlib import Path

import torch

from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_instance_segmenter, save_segmenter
from gkd_deploy.models.instance_segmenter import build_instance_segmenter
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


INSTANCE_SIZE = 64  # (height and width) the instance export's input


def confident_instance_heads(model, class_gain: float = 4.0, no_object: float = 8.0, mask_gain: float = 5.0):
    """`model` (a random instance segmenter) with its class head sharpened and "no object" made
    unlikely, and its mask logits scaled: each query then holds one class with p of 0.3-1 and a
    definite mask, as a trained model's do (a random model's near-uniform p ~0.1 puts every instance
    at the top-k cut). Changed in place; returns `model`."""
    head = model.decoder.transformer.head
    with torch.no_grad():
        head.class_embed.weight.mul_(class_gain)
        head.class_embed.bias.mul_(class_gain)
        head.class_embed.bias[-1] -= no_object
        head.mask_embed[-1].weight.mul_(mask_gain)
        head.mask_embed[-1].bias.mul_(mask_gain)
    return model


def tiny_instance_model(root: Path, seed: int = 0, export: bool = True) -> tuple[Path, Path | None]:
    """(root/instance.safetensors, root/export/model-fp32.onnx or None): a random tiny instance
    segmenter (`tests.test_instance_model.tiny_config`, 10 instances per image) of `seed` and, with
    `export`, its checked fp32 export at INSTANCE_SIZE x INSTANCE_SIZE (where `gkd export` puts it)."""
    from gkd_deploy.exporters.pipeline import export_model
    from tests.test_instance_model import tiny_config

    torch.manual_seed(seed)
    checkpoint = save_instance_segmenter(build_instance_segmenter(tiny_config()).eval(), root / "instance.safetensors")
    if not export:
        return checkpoint, None
    outcome = export_model(checkpoint, precisions=("fp32",), input_size=(INSTANCE_SIZE, INSTANCE_SIZE), check_count=1)
    return checkpoint, outcome.files[0].path
