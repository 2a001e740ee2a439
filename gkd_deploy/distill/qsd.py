"""Query-based soft distillation (QSD).

The student does not regress the teacher's tokens directly. Each student token asks (query) which
teacher tokens it relates to, and answers with a mix of the student's own value projections:

    q = Linear(LayerNorm(v_s)),  v = Linear(LayerNorm(v_s))        (two Cs -> Ct projections)
    v_s' = softmax(q @ v_t^T) @ v                                  (one head, no 1/sqrt(d), no temperature)
    loss = MSE(v_s', v_t)

with raw teacher tokens `v_t` as keys. This is attention with scale 1.0, so the fused kernel
(`scaled_dot_product_attention`) computes it without materialising the N x N matrix: memory grows
linearly with the number of tokens. The heads are thrown away after distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QSDHead(nn.Module):
    """One QSD head: student tokens (B, N, Cs), teacher tokens (B, N, Ct) -> scalar loss."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.query = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))
        self.value = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))

    def retrieve(self, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
        """v_s' (B, N, Ct): student queries over teacher keys, student values."""
        query = self.query(student_tokens).unsqueeze(1)  # (B, 1, N, Ct): one head
        value = self.value(student_tokens).unsqueeze(1)
        key = teacher_tokens.to(query.dtype).unsqueeze(1)
        return F.scaled_dot_product_attention(query, key, value, scale=1.0).squeeze(1)

    def forward(self, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
        return mse(self.retrieve(student_tokens, teacher_tokens), teacher_tokens)


class ProjectionHead(nn.Module):
    """Plain projected-feature distillation: LayerNorm + Linear, no attention (Proteus' heads).

    What QSD is measured against in the paper's "MSE" ablation: the same passes and the same
    value projection, without the query over the teacher's tokens.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.value = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))

    def retrieve(self, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, Cs) -> (B, N, Ct); the teacher's tokens are not looked at."""
        return self.value(student_tokens)

    def forward(self, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
        return mse(self.retrieve(student_tokens, teacher_tokens), teacher_tokens)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error in at least fp32: under bf16 autocast the squared error of large tokens
    loses precision."""
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    return F.mse_loss(prediction.to(dtype), target.to(dtype))


DISTILL_HEADS = {"qsd": QSDHead, "projection": ProjectionHead}


def reference_qsd(head: QSDHead, student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
    """The explicit formulation (materialises the N x N attention): for tests only."""
    query = head.query(student_tokens)
    value = head.value(student_tokens)
    attention = torch.softmax(query @ teacher_tokens.transpose(1, 2), dim=-1)
    return F.mse_loss(attention @ value, teacher_tokens)
