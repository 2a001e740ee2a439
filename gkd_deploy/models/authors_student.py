"""The GKD authors' students: a DINOv2-layout ViT, under timm's names.

The authors' released checkpoints (the Hugging Face hub's `yongers/GKD`) come in two formats:
distillation checkpoints (stages 1-2, here: `--student-weights`) and task-learning checkpoints
(stage 3, mmseg Mask2Former: `authors_mask2former`, `gkd models import`). Facts come from their
code; the code is our own.

Their distillation script saves (github Younger-hua/GKD, `general_distillation/main.py`)
`{'model': MetaArch.state_dict(), 'optimizer', 'lr_scheduler', 'epoch', 'model_ema', 'scaler',
'args': argparse.Namespace}`. `MetaArch` (`general_distillation/distillation_models_deit.py`)
holds `student.backbone` (the student), `teacher.backbone` and three QSD heads (`patch_head`,
`fea_head`, `token_head`); their converter (`task_learning/tools/convert_models/convert_gkd.py`)
keeps the keys with "student" and strips "student.backbone.".

The student is `DinoVisionTransformer` (`general_distillation/models_dinov2.py`) built with
`init_values=None` (no layer scale), `ffn_layer='mlp'`, `block_chunks=0` (blocks numbered
0..depth-1), `num_register_tokens=0`; qkv, projection and FFN biases on; LayerNorm eps 1e-6.
Its tensors:

    cls_token (1, 1, C)            pos_embed (1, 1 + n*n, C): the class slot first, then the
    mask_token (1, C)                 square grid of img_size / patch_size (257 = 1 + 16^2 in stage
    patch_embed.proj.weight           1: 224 px at patch 14; 1025 = 1 + 32^2 in stage 2: 512 px at
        (C, 3, p, p) and .bias        patch 16)
    blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2 .weight / .bias
    norm.weight / .bias

These are timm `VisionTransformer`'s names and layouts (class token inside the position
embedding, no distillation token) except `mask_token`, which lives in our `ViTEncoder`
as (1, 1, C). The task-learning backbone (`task_learning/rein/models/backbones/dino_v2.py`) has
the same names, under mmseg's "backbone." prefix.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

import torch

from gkd_deploy.errors import WeightsError

log = logging.getLogger(__name__)

STUDENT_PREFIX = "student.backbone."
MASK_TOKEN_KEY = "mask_token"


@dataclass(frozen=True)
class BackboneTensors:
    """A DINOv2-layout backbone split into timm's tensors and our encoder's mask token."""

    backbone: dict[str, torch.Tensor]
    mask_token: torch.Tensor | None  # (1, 1, C), or None when the file has none


def is_distillation_checkpoint(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a (model-level) state dict is the authors' MetaArch: keys under "student.backbone."."""
    return any(key.startswith(STUDENT_PREFIX) for key in state)


def dinov2_layout_to_timm(state: Mapping[str, torch.Tensor], source: str) -> BackboneTensors:
    """A DinoVisionTransformer's tensors (no prefix) -> timm's names plus the mask token as (1, 1, C)."""
    backbone = {key: value for key, value in state.items() if key != MASK_TOKEN_KEY}
    if "register_tokens" in backbone:
        raise WeightsError(f"{source}: the backbone has register tokens; the GKD students have none and "
                           "gkd-deploy's students cannot take them: give a checkpoint of a student without registers")
    mask_token = state.get(MASK_TOKEN_KEY)
    if mask_token is not None:
        if mask_token.ndim != 2 or mask_token.shape[0] != 1:
            raise WeightsError(f"{source}: mask_token has shape {tuple(mask_token.shape)}, expected (1, C) as the "
                               "authors' DinoVisionTransformer saves it")
        mask_token = mask_token.reshape(1, 1, -1)
    return BackboneTensors(backbone, mask_token)


def student_tensors(state: Mapping[str, torch.Tensor], source: str) -> BackboneTensors:
    """The student of the authors' distillation checkpoint; the teacher and the QSD heads are left
    out on purpose (they are thrown away after distillation), and the log says how many."""
    taken = {key[len(STUDENT_PREFIX):]: value for key, value in state.items() if key.startswith(STUDENT_PREFIX)}
    if not taken:
        raise WeightsError(f"{source} has no '{STUDENT_PREFIX}*' tensors: it is not a GKD distillation checkpoint")
    ignored = Counter(_group(key) for key in state if not key.startswith(STUDENT_PREFIX))
    described = ", ".join(f"{group}: {count}" for group, count in sorted(ignored.items())) or "none"
    log.info("GKD distillation checkpoint %s: took %d tensors from '%s'; ignored %d others (%s)",
             source, len(taken), STUDENT_PREFIX, sum(ignored.values()), described)
    return dinov2_layout_to_timm(taken, source)


def _group(key: str) -> str:
    """'teacher.backbone.blocks.0.norm1.weight' -> 'teacher.backbone'; 'fea_head.proj_q.0.weight' -> 'fea_head'."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] in ("teacher", "student") and len(parts) > 2 else parts[0]
