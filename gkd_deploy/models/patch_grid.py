"""Fit ViT weights to another patch size and token grid, the way the GKD authors do.

The authors run both networks at one patch size so that their token grids align: patch 14 in
stage 1 (the DeiT student's 16 x 16 kernel resized to 14 x 14) and patch 16 in stages 2-3 (the
DINOv2 teacher's 14 x 14 kernel resized to 16 x 16). The kernel is resized by plain bicubic
interpolation (`align_corners=False`) and the position embedding by bicubic interpolation to the
new grid, without antialiasing. (timm's own loader resizes kernels by a pseudo-inverse instead,
which keeps patch-embedding outputs but is not what the authors trained with.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

KERNEL_KEY = "patch_embed.proj.weight"
POS_KEY = "pos_embed"


def resize_kernel(weight: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(C, 3, k, k) patch-embedding kernel -> (C, 3, patch_size, patch_size), bicubic."""
    if weight.shape[-1] == patch_size and weight.shape[-2] == patch_size:
        return weight
    resized = F.interpolate(weight.float(), size=(patch_size, patch_size), mode="bicubic", align_corners=False)
    return resized.to(weight.dtype)


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """(1, P + n*n, C) position embedding of a square n x n grid -> (1, P + h*w, C) for `grid` (h, w)."""
    old_tokens = pos_embed.shape[1] - num_prefix_tokens
    side = math.isqrt(old_tokens)
    if side * side != old_tokens:
        raise ValueError(f"position embedding of {old_tokens} patch tokens is not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=[side, side],
                                  num_prefix_tokens=num_prefix_tokens, interpolation="bicubic", antialias=False)


def fit_state_dict(state: dict[str, torch.Tensor], target: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """A copy of `state` whose kernel and position embedding fit `target`'s patch size and grid.

    `target` is a timm VisionTransformer / Eva built at the patch and input size it will run at;
    `prefix` is what the state's keys carry before the backbone's own names (e.g. "backbone.").
    """
    state = dict(state)
    kernel_key, pos_key = prefix + KERNEL_KEY, prefix + POS_KEY
    if kernel_key in state:
        state[kernel_key] = resize_kernel(state[kernel_key], target.patch_embed.patch_size[0])
    if pos_key in state and getattr(target, POS_KEY, None) is not None:
        num_prefix = 0 if getattr(target, "no_embed_class", False) else target.num_prefix_tokens
        state[pos_key] = resize_pos_embed(state[pos_key], tuple(target.patch_embed.grid_size), num_prefix)
    return state


def drop_distillation_token(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A distilled DeiT's weights as a plain ViT's: no distillation token, no distillation head,
    and its position-embedding slot (index 1, after the class token) removed."""
    state = {k: v for k, v in state.items() if k != "dist_token" and not k.startswith("head_dist.")}
    if POS_KEY in state:
        pos_embed = state[POS_KEY]
        state[POS_KEY] = torch.cat([pos_embed[:, :1], pos_embed[:, 2:]], dim=1)
    return state

