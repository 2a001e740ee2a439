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
import types
from typing import Any

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


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int,
                     old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, P + n*m, C) position embedding of an `old_grid` (n, m; default square) -> (1, P + h*w, C)
    for `grid` (h, w). The project's one resize of position embeddings: when weights are loaded
    and when an encoder runs at another size than it was built at (`embed_positions`)."""
    old_tokens = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(old_tokens)
        if side * side != old_tokens:
            raise ValueError(f"position embedding of {old_tokens} patch tokens is not a square grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=list(old_grid),
                                  num_prefix_tokens=num_prefix_tokens, interpolation="bicubic", antialias=False)


def embed_positions(backbone: nn.Module, patches: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, Any]:
    """What timm's `VisionTransformer._pos_embed` / `Eva._pos_embed` compute for a dynamic-size
    backbone, with the position embedding resized by `resize_pos_embed` (bicubic, no antialiasing,
    as the authors at load and at run time) instead of timm's antialiased resample. Installed on
    every encoder's backbone (`use_project_positions`), so that the distillation passes and timm's
    `forward_intermediates` run one resize.

    patches (B, h, w, C) -> tokens (B, P + h*w, C), [class, registers, patches]; for Eva (rotary
    embeddings) also the rotary embedding of the (h, w) grid, as Eva's blocks take it.
    """
    batch, height, width, channels = patches.shape
    x = patches.reshape(batch, height * width, channels)
    prefix = [token.expand(batch, -1, -1) for token in (backbone.cls_token, backbone.reg_token) if token is not None]
    if backbone.pos_embed is not None:
        num_prefix = 0 if backbone.no_embed_class else backbone.num_prefix_tokens
        pos_embed = resize_pos_embed(backbone.pos_embed, (height, width), num_prefix,
                                     tuple(backbone.patch_embed.grid_size))
        if backbone.no_embed_class:
            x = torch.cat([*prefix, x + pos_embed], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos_embed
    else:
        x = torch.cat([*prefix, x], dim=1)
    x = backbone.pos_drop(x)
    if not hasattr(backbone, "rope"):
        return x
    if getattr(backbone, "patch_drop", None) is not None:
        raise ValueError("patch dropout on an Eva backbone is not supported (its rotary embedding would need "
                         "the kept indices); build it with patch_drop_rate 0")
    rope = backbone.rope.get_embed(shape=(height, width)) if backbone.rope is not None else None
    return x, rope


def use_project_positions(backbone: nn.Module) -> None:
    """Route `backbone`'s position embedding (its `_pos_embed`, which timm's own forward passes
    call) through `embed_positions`. The backbone must be built with `dynamic_img_size=True`."""
    if not getattr(backbone, "dynamic_img_size", False):
        raise ValueError("the backbone must be built with dynamic_img_size=True")
    backbone._pos_embed = types.MethodType(embed_positions, backbone)


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

