"""The training-only pixel projection head of SSKD's student: features -> unit pixel embeddings.

Two 1x1 convolutions with a ReLU between (the usual pixel-contrast MLP), then L2 normalisation
over channels, so the dot products of L_pxl are cosines. D = 128 and a hidden width equal to the
input width are our choices (the paper gives neither). The head is thrown away after training:
it is not part of the exported model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.config import DEFAULT_PROJECTION_DIM as EMBED_DIM


class PixelProjectionHead(nn.Module):
    """(B, C, h, w) features -> (B, D, h, w) embeddings of unit length along D.

    Args:
        in_channels: C.
        embed_dim: D.
        hidden_channels: the MLP's hidden width; None = C.
    """

    def __init__(self, in_channels: int, embed_dim: int = EMBED_DIM, hidden_channels: int | None = None) -> None:
        super().__init__()
        hidden = in_channels if hidden_channels is None else hidden_channels
        self.mlp = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, embed_dim, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(features), dim=1)
