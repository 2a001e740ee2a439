"""The GKD distillation objective: a frozen teacher, the student encoder and three QSD heads.

Per batch (images (B, 3, H, W), both networks at one patch size, so one token grid):
- the teacher sees the clean image once, without gradients;
- the student runs twice: clean (feature head: [CLS, patches] against the teacher's) and with the
  mask token at masked patches (patch head: all patches against the teacher's clean patches;
  token head: the CLS token against the teacher's CLS, where the single key makes QSD the value
  projection alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd_deploy.distill.qsd import DISTILL_HEADS
from gkd_deploy.models.encoder import ViTEncoder


@dataclass(frozen=True)
class LossWeights:
    feature: float = 1.0
    patch: float = 1.0
    token: float = 1.0


class GKDDistiller(nn.Module):
    """Student + QSD heads (trained) and teacher (frozen, always in eval mode)."""

    def __init__(self, student: ViTEncoder, teacher: ViTEncoder, weights: LossWeights = LossWeights(),
                 head: str = "qsd") -> None:
        super().__init__()
        if student.patch_size != teacher.patch_size:
            raise ValueError(f"student patch {student.patch_size} != teacher patch {teacher.patch_size}: "
                             "build both at one patch size so their token grids align")
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.weights = weights
        # "qsd" is the method; "mse" (plain projected-feature MSE) is the baseline it is measured against.
        head_class = DISTILL_HEADS[head]
        self.heads = nn.ModuleDict({
            name: head_class(student.embed_dim, teacher.embed_dim) for name in ("feature", "patch", "token")
        })

    def train(self, mode: bool = True) -> "GKDDistiller":
        super().train(mode)
        self.teacher.eval()  # frozen: dropout/drop-path off, whatever the stage does
        return self

    def trainable_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"student": self.student, "heads": self.heads})

    def forward(self, images: torch.Tensor, patch_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) float 0..255, patch_mask (B, h*w) bool -> losses (scalars)."""
        with torch.no_grad():
            teacher_tokens = self.teacher.forward_tokens(images)  # (B, 1 + N, Ct)
        clean = self.student.forward_tokens(images)  # (B, 1 + N, Cs)
        masked = self.student.forward_tokens(images, patch_mask)
        losses = {
            "feature": self.heads["feature"](clean, teacher_tokens),
            "patch": self.heads["patch"](masked[:, 1:], teacher_tokens[:, 1:]),
            "token": self.heads["token"](masked[:, :1], teacher_tokens[:, :1]),
        }
        losses["loss"] = (self.weights.feature * losses["feature"] + self.weights.patch * losses["patch"]
                          + self.weights.token * losses["token"])
        return losses
