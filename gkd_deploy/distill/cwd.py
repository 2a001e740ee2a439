"""Channel-wise distillation (CWD), a baseline for dense-prediction feature distillation.

Shu, Liu, Gao, Yan, Shen, "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021.

Each channel of a feature map is read as a distribution over the spatial positions (softmax at
temperature tau over the N positions); the student matches the teacher's distribution of every
channel with a KL divergence:

    loss = weight * tau^2 * sum_{b, c} KL(p_teacher[b, c] || p_student[b, c]) / (B * Ct)

Shapes: student tokens (B, N, Cs), teacher tokens (B, N, Ct), N = h * w patch tokens (no CLS).
The paper's 1x1 convolution that aligns the student's channels is a Linear(Cs -> Ct) per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_tokens(name: str, tokens: torch.Tensor, dim: int) -> None:
    """Raise a ValueError unless `tokens` is (B, N, dim)."""
    if tokens.dim() != 3 or tokens.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (B, N, {dim}), got {tuple(tokens.shape)}")


class ChannelWiseDivergence(nn.Module):
    """CWD loss: student tokens (B, N, Cs), teacher tokens (B, N, Ct) -> scalar."""

    def __init__(self, student_dim: int, teacher_dim: int, tau: float = 1.0, weight: float = 3.0) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.tau, self.weight = tau, weight
        self.align = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens("student_tokens", student_tokens, self.student_dim)
        _check_tokens("teacher_tokens", teacher_tokens, self.teacher_dim)
        if teacher_tokens.shape[:2] != student_tokens.shape[:2]:
            raise ValueError(
                f"teacher_tokens must have the batch size and token count of student_tokens "
                f"{tuple(student_tokens.shape[:2])}, got {tuple(teacher_tokens.shape[:2])}"
            )
        aligned = self.align(student_tokens)
        # Softmax and KL in at least fp32: under bf16 autocast, N-way softmaxes lose their tails.
        dtype = torch.promote_types(aligned.dtype, torch.float32)
        # Dimension 1 is the N spatial positions: one distribution per (image, channel).
        student_log_probs = F.log_softmax(aligned.to(dtype) / self.tau, dim=1)
        teacher_log_probs = F.log_softmax(teacher_tokens.to(dtype) / self.tau, dim=1)
        divergence = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum()
        batch_size = student_tokens.shape[0]
        return self.weight * self.tau**2 * divergence / (batch_size * self.teacher_dim)
