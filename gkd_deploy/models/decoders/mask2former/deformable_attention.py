"""Multi-scale deformable attention (Deformable DETR's MSDeformAttn) in plain PyTorch.

Every query looks at `num_points` locations per head and per level around its reference point;
the offsets and the attention weights over the num_levels * num_points locations are predicted
from the query by linear layers, and the values there are read with bilinear interpolation.

The reference implementation ships a CUDA kernel; here the interpolation is
`F.grid_sample(bilinear, zero padding, align_corners=False)` in training, and for export the same
bilinear rule written with GatherElements (`bilinear_sample`): TensorRT has built wrong engines
for GridSample-based deformable attention, while gathers and element-wise arithmetic are plain
ONNX every runtime runs. `sampling` says which (the exporter sets "gather"). Everything that shapes the computation comes from
tensor sizes or the configuration (levels, heads, points): no `.item()` and no loop over data
values, so one trace serves every batch size.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


SAMPLINGS = ("grid_sample", "gather")


def bilinear_sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)` from
    gathers: image (N, C, H, W), grid (N, Hg, Wg, 2) as (x, y) in [-1, 1] -> (N, C, Hg, Wg).

    Each output reads its four neighbours; a neighbour outside the image contributes zero (its
    index is clamped for the gather and its weight zeroed)."""
    channels, height, width = image.shape[1:]  # sizes only: the batch stays free in an export
    grid_h, grid_w = grid.shape[1:3]
    # align_corners=False: -1 and 1 are the outer edges of the border pixels.
    x = ((grid[..., 0] + 1.0) * width - 1.0) * 0.5
    y = ((grid[..., 1] + 1.0) * height - 1.0) * 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    flat = image.flatten(2)  # (N, C, H*W)
    output = None
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1.0 - (x - xi).abs()) * (1.0 - (y - yi).abs())
        inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
        weight = weight * inside.to(weight.dtype)
        index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).to(torch.int64)
        index = index.reshape(-1, 1, grid_h * grid_w).expand(-1, channels, grid_h * grid_w)
        values = flat.gather(2, index).reshape(-1, channels, grid_h, grid_w)
        term = values * weight[:, None]
        output = term if output is None else output + term
    return output


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention of queries over a flattened multi-level feature map.

    Args:
        dim: channels C of queries and values; divisible by `num_heads`.
        num_levels: number of feature levels L the value holds.
        num_heads: attention heads M (each samples its own points, from its own C/M channels).
        num_points: sampling points P per head and level.
    """

    def __init__(self, dim: int, num_levels: int, num_heads: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"deformable attention: dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_levels, self.num_heads, self.num_points = dim, num_levels, num_heads, num_points
        self.sampling = "grid_sample"  # or "gather" (the exporter's choice, see the module docstring)
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Deformable DETR's initialisation: zero offset weights, and biases that start head m's
        # points on a ray at angle 2*pi*m/M, point k at distance k+1 pixels (so the heads look in
        # different directions and the points at growing radii); uniform attention weights.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack((angles.cos(), angles.sin()), dim=-1)
        directions = directions / directions.abs().amax(dim=-1, keepdim=True)  # onto the unit square
        radii = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        bias = directions[:, None, None, :] * radii[None, None, :, None]  # (M, 1, P, 2)
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
        shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        """Attend from every query to its sampling points.

        Args:
            query: (B, Lq, C) queries (with their position embedding added).
            reference_points: (Lq, 2) as (x, y) in [0, 1] of the image, shared by the batch and
                the same on every level (no padded images here, so Deformable DETR's per-level
                valid ratios are all 1).
            value: (B, S, C) the levels flattened row-major and concatenated, S = sum(h_l * w_l).
            shapes: the (h_l, w_l) of each level, in the order of `value`.

        Returns:
            (B, Lq, C).
        """
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        head_dim = self.dim // heads
        # Values per head as images for grid_sample: (B*M, C/M, h_l, w_l) per level.
        value = self.value_proj(value).unflatten(-1, (heads, head_dim))  # (B, S, M, C/M)
        value = value.permute(0, 2, 3, 1).flatten(0, 1)  # (B*M, C/M, S)
        per_level = value.split([h * w for h, w in shapes], dim=-1)
        # Offsets in pixels of each level: (B*M, Lq, L, P, 2).
        offsets = self.sampling_offsets(query).unflatten(-1, (heads, levels, points, 2))
        offsets = offsets.transpose(1, 2).flatten(0, 1)
        # Attention weights, normalised over all L*P locations of a head: (B*M, Lq, L, P).
        weights = self.attention_weights(query).unflatten(-1, (heads, levels * points)).softmax(dim=-1)
        weights = weights.unflatten(-1, (levels, points)).transpose(1, 2).flatten(0, 1)
        # (Lq, 2) -> (1, Lq, 1, 2): broadcast over batch, heads and points.
        reference = reference_points[None, :, None, :]

        output = None
        for level, ((height, width), level_value) in enumerate(zip(shapes, per_level)):
            # Pixel offsets -> fractions of this level's extent; then grid_sample's [-1, 1].
            scale = offsets.new_tensor([1.0 / width, 1.0 / height])
            locations = reference + offsets[:, :, level] * scale  # (B*M, Lq, P, 2)
            image, grid = level_value.unflatten(-1, (height, width)), 2.0 * locations - 1.0
            if self.sampling == "gather":
                sampled = bilinear_sample(image, grid)  # (B*M, C/M, Lq, P)
            else:
                sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            contribution = (sampled * weights[:, None, :, level]).sum(dim=-1)  # (B*M, C/M, Lq)
            output = contribution if output is None else output + contribution
        # (B*M, C/M, Lq) -> (B, Lq, C), heads concatenated as the value projection split them.
        output = output.unflatten(0, (-1, heads)).flatten(1, 2).transpose(1, 2)
        return self.output_proj(output)
