"""Augmentation-free dense contrastive distillation (Af-DCD), a baseline for segmentation KD.

Fan, Li, Liu, Song, Yao, "Augmentation-free Dense Contrastive Knowledge Distillation for
Efficient Semantic Segmentation", NeurIPS 2023.

Inputs are maps: student (B, Cs, h, w), teacher (B, Ct, h, w), and a keep mask (B, 1, h, w) with 0
at masked positions and 1 elsewhere (see `afdcd_keep_mask`). The student map is aligned by a 1x1
convolution, masked, and projected by Conv3x3 -> ReLU -> Conv3x3. Two terms:

- feature (masked feature mimicking): feature_weight * sum of squared errors(projected, teacher) / B.
- contrast (omni-contrasting): both maps are max-pooled (kernel = stride = pool), cut into
  patch x patch spatial patches and `groups` channel groups. Inside one spatial patch, every
  student sub-vector (position p, group g) has its teacher sub-vector (p, g) as positive and every
  teacher sub-vector of another group (any position) as negative, with similarity = minus the L1
  distance, at temperature tau. The cross-entropies, summed over all items, patches and images and
  divided by H' * W' (the pooled grid), give ctr; contrast = contrast_weight * ctr / B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def afdcd_keep_mask(
    batch_size: int, height: int, width: int, mask_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """(batch_size, 1, height, width) float: 0 (masked) with probability mask_ratio per position, else 1."""
    if not 0 <= mask_ratio <= 1:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
    uniform = torch.rand(batch_size, 1, height, width, generator=generator)
    # Masked where u > 1 - mask_ratio, as in the official code.
    return (uniform <= 1 - mask_ratio).float()


def _check_map(name: str, feature_map: torch.Tensor, channels: int) -> None:
    if feature_map.dim() != 4 or feature_map.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, h, w), got {tuple(feature_map.shape)}")


def _pooled_grid(height: int, width: int, pool: int) -> tuple[int, int]:
    """The grid after max-pooling with kernel = stride = pool (floored, as max_pool2d does)."""
    return (height // pool, width // pool) if pool > 1 else (height, width)


def _omni_contrast_items(feature_map: torch.Tensor, patch: int, groups: int) -> torch.Tensor:
    """(B, C, H', W') -> (B * patches, patch * patch * groups, C / groups) sub-vectors.

    Items of one spatial patch are ordered by (position in the patch, row-major; channel group).
    """
    batch, channels, height, width = feature_map.shape
    blocks = feature_map.reshape(batch, groups, channels // groups, height // patch, patch, width // patch, patch)
    # -> (B, H'/patch, W'/patch, row in patch, column in patch, group, channel in group)
    blocks = blocks.permute(0, 3, 5, 4, 6, 1, 2)
    return blocks.reshape(-1, patch * patch * groups, channels // groups)


def _omni_contrast(
    student_items: torch.Tensor, teacher_items: torch.Tensor, groups: int, tau: float
) -> torch.Tensor:
    """Summed cross-entropy of every student item against its positive and the other-group negatives.

    student_items, teacher_items: (M, P * groups, d) with items ordered (position, group).
    """
    items = student_items.shape[1]
    logits = -torch.cdist(student_items, teacher_items, p=1) / tau  # (M, student item, teacher item)
    group = torch.arange(items, device=logits.device) % groups
    positive = torch.eye(items, dtype=torch.bool, device=logits.device)
    # Candidates of student item u: its positive and the teacher items of any other group.
    candidates = (group[:, None] != group[None, :]) | positive
    log_normaliser = logits.masked_fill(~candidates, float("-inf")).logsumexp(dim=-1)
    return (log_normaliser - logits.diagonal(dim1=1, dim2=2)).sum()


class AfDCDLoss(nn.Module):
    """Af-DCD: masked feature mimicking plus omni-contrasting -> {"feature", "contrast", "loss"}."""

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        tau: float = 0.07,
        groups: int = 16,
        pool: int = 4,
        patch: int = 4,
        mask_ratio: float = 0.75,
        feature_weight: float = 4e-5,
        contrast_weight: float = 1e-3,
    ) -> None:
        super().__init__()
        if teacher_dim % groups != 0:
            raise ValueError(f"groups must divide teacher_dim {teacher_dim}, got groups={groups}; change groups")
        if not 0 <= mask_ratio <= 1:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        if tau <= 0 or pool < 1 or patch < 1:
            raise ValueError(f"tau must be > 0 and pool, patch >= 1, got tau={tau}, pool={pool}, patch={patch}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.tau, self.groups, self.pool, self.patch = tau, groups, pool, patch
        # The mask itself comes from the caller (afdcd_keep_mask); kept here for the configuration.
        self.mask_ratio = mask_ratio
        self.feature_weight, self.contrast_weight = feature_weight, contrast_weight
        self.align = nn.Conv2d(student_dim, teacher_dim, 1)
        self.projector = nn.Sequential(
            nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1),
        )

    def check_grid(self, height: int, width: int) -> None:
        """Raise a ValueError unless the pooled grid is cut into whole patch x patch patches."""
        pooled_height, pooled_width = _pooled_grid(height, width, self.pool)
        if 0 in (pooled_height, pooled_width) or pooled_height % self.patch or pooled_width % self.patch:
            raise ValueError(
                f"the feature grid {height}x{width} pooled by pool={self.pool} gives "
                f"{pooled_height}x{pooled_width}, which must be a non-empty multiple of patch={self.patch} "
                f"in both sides (groups={self.groups}); change pool or patch, or the input size"
            )

    def contrast(self, projected: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
        """contrast_weight * ctr / B for projected student (B, Ct, h, w) and teacher (B, Ct, h, w)."""
        if self.pool > 1:
            projected = F.max_pool2d(projected, self.pool, self.pool)
            teacher_map = F.max_pool2d(teacher_map, self.pool, self.pool)
        pooled_height, pooled_width = projected.shape[-2:]
        student_items = _omni_contrast_items(projected, self.patch, self.groups)
        teacher_items = _omni_contrast_items(teacher_map, self.patch, self.groups)
        ctr = _omni_contrast(student_items, teacher_items, self.groups, self.tau) / (pooled_height * pooled_width)
        return self.contrast_weight * ctr / projected.shape[0]

    def forward(
        self, student_map: torch.Tensor, teacher_map: torch.Tensor, keep: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        _check_map("student_map", student_map, self.student_dim)
        batch, _, height, width = student_map.shape
        if teacher_map.shape != (batch, self.teacher_dim, height, width):
            raise ValueError(
                f"teacher_map must have shape {(batch, self.teacher_dim, height, width)}, "
                f"got {tuple(teacher_map.shape)}"
            )
        if keep.shape != (batch, 1, height, width):
            raise ValueError(f"keep must have shape {(batch, 1, height, width)}, got {tuple(keep.shape)}")
        self.check_grid(height, width)
        aligned = self.align(student_map)
        projected = self.projector(aligned * keep.to(aligned.dtype))
        # Both terms in at least fp32: L1 distances and squared errors over many channels.
        dtype = torch.promote_types(projected.dtype, torch.float32)
        projected, teacher_map = projected.to(dtype), teacher_map.to(dtype)
        feature = self.feature_weight * (projected - teacher_map).square().sum() / batch
        contrast = self.contrast(projected, teacher_map)
        return {"feature": feature, "contrast": contrast, "loss": feature + contrast}
