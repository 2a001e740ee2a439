"""ViTKD feature distillation, a baseline for ViT-to-ViT feature distillation.

Yang, Li, Zeng, Li, Yuan, Li, "ViTKD: Practical Guidelines for ViT feature knowledge
distillation", arXiv 2209.02432, 2022.

Two terms:

- mimicking, on the shallow layers: the patch tokens of the outputs of the first two blocks,
  student (B, 2, N, Cs) and teacher (B, 2, N, Ct); one Linear(Cs -> Ct) per layer;
  mimic = alpha * sum of squared errors / B.
- generation, on the deep layer: the patch tokens of the last block after the final norm, student
  (B, N, Cs) and teacher (B, N, Ct); aligned by a Linear(Cs -> Ct), masked tokens replaced by a
  learnable mask token, laid out on the (h, w) grid and passed through
  Conv3x3 -> ReLU -> Conv3x3; generate = beta * sum of squared errors on the masked tokens
  / B / mask_ratio.

N = h * w patch tokens in row-major order of the grid, no CLS. Masks (B, N) bool, True = masked,
come from the caller (see `vitkd_mask`) so that they follow the per-step seeded generator.
"""

from __future__ import annotations

import torch
from torch import nn

SHALLOW_LAYERS = 2


def vitkd_mask(batch_size: int, num_tokens: int, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(batch_size, num_tokens) bool, True = masked: `num_tokens - int(num_tokens * (1 - mask_ratio))`
    positions per row, uniformly random per row."""
    _check_mask_ratio(mask_ratio)
    count = num_tokens - int(num_tokens * (1 - mask_ratio))
    order = torch.rand(batch_size, num_tokens, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch_size, num_tokens, dtype=torch.bool)
    mask.scatter_(1, order[:, :count], True)
    return mask


def _check_mask_ratio(mask_ratio: float) -> None:
    # The generation term divides by mask_ratio: 0 would divide by zero.
    if not 0 < mask_ratio <= 1:
        raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple) -> None:
    """Raise a ValueError unless `tensor` has `expected` shape; None in `expected` matches any size."""
    matches = tensor.dim() == len(expected) and all(
        size is None or size == actual for size, actual in zip(expected, tensor.shape)
    )
    if not matches:
        described = ", ".join("?" if size is None else str(size) for size in expected)
        raise ValueError(f"{name} must have shape ({described}), got {tuple(tensor.shape)}")


class ViTKDLoss(nn.Module):
    """ViTKD: shallow mimicking plus masked deep generation -> {"mimic", "generate", "loss"}."""

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        alpha: float = 3e-5,
        beta: float = 3e-6,
        mask_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        _check_mask_ratio(mask_ratio)
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.alpha, self.beta, self.mask_ratio = alpha, beta, mask_ratio
        self.align_shallow = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(SHALLOW_LAYERS))
        self.align_deep = nn.Linear(student_dim, teacher_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, teacher_dim))
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1),
        )

    def mimic(self, student_shallow: torch.Tensor, teacher_shallow: torch.Tensor) -> torch.Tensor:
        """alpha * sum of squared errors / B; (B, 2, N, Cs) and (B, 2, N, Ct) -> scalar."""
        _check_shape("student_shallow", student_shallow, (None, SHALLOW_LAYERS, None, self.student_dim))
        batch, _, tokens, _ = student_shallow.shape
        _check_shape("teacher_shallow", teacher_shallow, (batch, SHALLOW_LAYERS, tokens, self.teacher_dim))
        aligned = torch.stack([align(student_shallow[:, layer]) for layer, align in enumerate(self.align_shallow)], 1)
        # Squared errors in at least fp32: sums of many bf16 squares lose precision.
        dtype = torch.promote_types(aligned.dtype, torch.float32)
        error = (aligned.to(dtype) - teacher_shallow.to(dtype)).square().sum()
        return self.alpha * error / batch

    def generate(
        self, student_deep: torch.Tensor, grid: tuple[int, int], mask: torch.Tensor
    ) -> torch.Tensor:
        """Generated teacher tokens (B, N, Ct) from student tokens (B, N, Cs) with masked ones hidden."""
        height, width = grid
        aligned = self.align_deep(student_deep)
        hidden = torch.where(mask[..., None], self.mask_token, aligned)
        # Row-major tokens -> (B, Ct, h, w) map for the 3x3 convolutions.
        feature_map = hidden.transpose(1, 2).reshape(student_deep.shape[0], self.teacher_dim, height, width)
        return self.generation(feature_map).flatten(2).transpose(1, 2)

    def generation_loss(
        self, student_deep: torch.Tensor, teacher_deep: torch.Tensor, grid: tuple[int, int], mask: torch.Tensor
    ) -> torch.Tensor:
        """beta * sum of squared errors on the masked tokens / B / mask_ratio -> scalar."""
        _check_shape("student_deep", student_deep, (None, None, self.student_dim))
        batch, tokens, _ = student_deep.shape
        _check_shape("teacher_deep", teacher_deep, (batch, tokens, self.teacher_dim))
        _check_shape("mask", mask, (batch, tokens))
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = masked), got dtype {mask.dtype}")
        if len(grid) != 2 or grid[0] * grid[1] != tokens:
            raise ValueError(f"grid must be (h, w) with h * w = {tokens} (the token count), got {tuple(grid)}")
        generated = self.generate(student_deep, grid, mask)
        dtype = torch.promote_types(generated.dtype, torch.float32)
        error = (generated.to(dtype) - teacher_deep.to(dtype)).square().sum(dim=-1)
        # where, not boolean indexing: no device-to-host sync for the masked count.
        masked_error = torch.where(mask, error, torch.zeros_like(error)).sum()
        return self.beta * masked_error / batch / self.mask_ratio

    def forward(
        self,
        student_shallow: torch.Tensor,
        teacher_shallow: torch.Tensor,
        student_deep: torch.Tensor,
        teacher_deep: torch.Tensor,
        grid: tuple[int, int],
        mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        mimic = self.mimic(student_shallow, teacher_shallow)
        generate = self.generation_loss(student_deep, teacher_deep, grid, mask)
        return {"mimic": mimic, "generate": generate, "loss": mimic + generate}
