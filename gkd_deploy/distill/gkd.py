"""The GKD distillation objective (and its projection-head relatives): three terms on two passes.

Token routing as the GKD authors' code does it (`general_distillation/distillation_models_deit.py`),
for images (B, 3, H, W), both networks on one token grid of N patches:
- the teacher sees the clean image once, without gradients: CLS t_c (B, 1, Ct), patches t_p (B, N, Ct);
- the student runs clean (CLS s_c, patches s_p) and masked (patches m_p, the first half of the
  batch with half its patches replaced by the mask token);
- token term:   MSE(token_head(s_c), t_c); one key, so QSD reduces to the value projection;
- feature term: MSE(cat[token_head(s_c), feature_head(s_p)], cat[t_c, t_p]): the feature head
  attends over the clean PATCH tokens only, its CLS slot is filled by the token head;
- patch term:   MSE(patch_head(m_p), t_p) over every patch of the masked pass (GKD), or only over
  the masked patches (Proteus, whose objective GKD's code is built from).

With QSD heads this is GKD (Lv et al. 2026); with LayerNorm + Linear projection heads it is the
paper's "MSE" ablation (patch term over all patches) or Proteus (Zhang et al., "Accessing Vision
Foundation Models via ImageNet-1K", 2024: patch term over the masked patches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd_deploy.distill.masking import BatchRandom, first_images_mask
from gkd_deploy.distill.qsd import DISTILL_HEADS, mse

PATCH_TERMS = ("all", "masked")


@dataclass(frozen=True)
class LossWeights:
    feature: float = 1.0
    patch: float = 1.0
    token: float = 1.0


class ThreeTermObjective(nn.Module):
    """Feature, patch and token terms with one head each (`head`: "qsd" or "projection")."""

    def __init__(self, student_dim: int, teacher_dim: int, *, head: str = "qsd",
                 weights: LossWeights = LossWeights(), mask_prob: float = 0.5, mask_ratio: float = 0.5,
                 patch_term: str = "all") -> None:
        super().__init__()
        if patch_term not in PATCH_TERMS:
            raise ValueError(f"patch_term must be one of {PATCH_TERMS}, got {patch_term!r}")
        head_class = DISTILL_HEADS[head]
        self.heads = nn.ModuleDict({name: head_class(student_dim, teacher_dim) for name in ("feature", "patch", "token")})
        self.weights = weights
        self.mask_prob, self.mask_ratio = mask_prob, mask_ratio
        self.patch_term = patch_term

    def forward(self, student: nn.Module, teacher: nn.Module, images: torch.Tensor,
                random: BatchRandom) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) float 0..255 -> {"feature", "patch", "token", "loss"} scalars."""
        height, width = student.grid_size(images.shape[-2], images.shape[-1])
        mask = random.take(first_images_mask(random.global_batch, height * width, self.mask_prob, self.mask_ratio,
                                             random.generator)).to(images.device)
        with torch.no_grad():
            teacher_tokens = teacher.forward_tokens(images)
        teacher_cls, teacher_patches = teacher_tokens[:, :1], teacher_tokens[:, 1:]
        clean = student.forward_tokens(images)
        masked = student.forward_tokens(images, mask)
        student_cls = self.heads["token"].retrieve(clean[:, :1], teacher_cls)
        student_patches = self.heads["feature"].retrieve(clean[:, 1:], teacher_patches)
        recovered = self.heads["patch"].retrieve(masked[:, 1:], teacher_patches)
        losses = {
            "feature": mse(torch.cat([student_cls, student_patches], 1), torch.cat([teacher_cls, teacher_patches], 1)),
            "patch": self._patch_loss(recovered, teacher_patches, mask),
            "token": mse(student_cls, teacher_cls),
        }
        losses["loss"] = (self.weights.feature * losses["feature"] + self.weights.patch * losses["patch"]
                          + self.weights.token * losses["token"])
        return losses

    def _patch_loss(self, recovered: torch.Tensor, teacher_patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.patch_term == "all":
            return mse(recovered, teacher_patches)
        if not bool(mask.any()):
            # No masked patch in this batch: a zero that keeps the head in the graph (DDP needs it).
            return recovered.sum() * 0.0
        return mse(recovered[mask], teacher_patches[mask])


class Distiller(nn.Module):
    """Student + objective (trained) and teacher (frozen, always in eval mode)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        if student.patch_size != teacher.patch_size:
            raise ValueError(f"student patch {student.patch_size} != teacher patch {teacher.patch_size}: "
                             "build both at one patch size so their token grids align")
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.objective = objective

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()  # frozen: dropout/drop-path off, whatever the stage does
        return self

    def trainable_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict({"student": self.student, "objective": self.objective})

    def forward(self, images: torch.Tensor, random: BatchRandom) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) float 0..255 -> the objective's losses (scalars, total under "loss")."""
        return self.objective(self.student, self.teacher, images, random)
