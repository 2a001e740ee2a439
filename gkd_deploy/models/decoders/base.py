"""What every decoder offers the rest of the product.

- `forward(feature_maps)`: per-class scores (B, K, h, w) for inference, evaluation and export.
- `forward_train(feature_maps)`: whatever the decoder's loss needs (dense decoders: the same logits;
  query-based decoders: class and mask predictions of every layer).
- `loss(outputs, labels)`: a dict of scalar losses with the total under "loss"; `labels` are
  (B, H, W) int64 train ids with 255 ignored, at the input resolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.data.classes import IGNORE_INDEX


class DenseDecoder(nn.Module):
    """A decoder whose output is per-pixel class logits, trained with cross-entropy."""

    def forward_train(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        return self(feature_maps)

    def loss(self, outputs: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of (B, K, h, w) logits, resized bilinearly to the labels' (H, W)."""
        logits = F.interpolate(outputs, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
        return {"loss": loss, "ce": loss.detach()}
