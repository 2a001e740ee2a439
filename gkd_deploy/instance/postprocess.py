"""Mask2Former's instance post-processing: raw class and mask logits -> K scored instances.

Per image (Cheng et al. 2022, instance inference):
    p = softmax(class logits)[:, :C]          (Q, C), "no object" dropped after the softmax
    top K = min(top_k, Q * C) of p over (query, class) pairs: each query may give several instances
    mask = sigmoid(mask logit) > 0.5 at the output size (bilinear resize of the logits)
    score = p(query, class) * mean of sigmoid(mask logit) inside the mask (0 for an empty mask)
The instances come in order of p, not of the final score (as Mask2Former returns them); COCO's
AP sorts by score itself.

Written with exportable ops only (softmax, topk, integer division, a flat gather, resize): the
same function runs in PyTorch and, wrapped in `InstancePostprocess`, at the end of an ONNX graph
that then outputs masks, classes and scores. K is fixed by the shapes, so the outputs have static
sizes (B, K, ...), as ONNX and TensorRT want; unused slots simply carry low scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.errors import ConfigError


def instance_predictions(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, output_size: tuple[int, int] | None = None, *,
    top_k: int = 100, mask_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw decoder logits -> the K best instances of every image.

    Args:
        class_logits: (B, Q, C+1), the last class "no object".
        mask_logits: (B, Q, h, w).
        output_size: (H, W) of the masks; None keeps (h, w).
        top_k: K, at most Q * C (fewer pairs than that give Q * C).
        mask_threshold: on the mask probability.

    Returns:
        masks (B, K, H, W) bool, classes (B, K) int64 in [0, C), scores (B, K) float in [0, 1].
    """
    if top_k < 1:
        raise ConfigError(f"instance post-processing: top_k must be at least 1, got {top_k}")
    batch, num_queries, num_labels = class_logits.shape
    num_classes = num_labels - 1
    count = min(top_k, num_queries * num_classes)
    probabilities = class_logits.softmax(-1)[..., :num_classes].flatten(1)  # (B, Q*C), query-major
    class_scores, pairs = probabilities.topk(count, dim=1)  # (B, K), sorted
    queries = torch.div(pairs, num_classes, rounding_mode="floor")
    classes = pairs - queries * num_classes
    # One flat gather over (B*Q) masks, not a gather of (B, K, h, w) indices: the index stays B*K long.
    offsets = torch.arange(batch, device=pairs.device).unsqueeze(1) * num_queries
    chosen = mask_logits.flatten(0, 1)[(queries + offsets).flatten()]  # (B*K, h, w)
    chosen = chosen.reshape(batch, count, *mask_logits.shape[2:])
    if output_size is not None and tuple(output_size) != tuple(mask_logits.shape[2:]):
        chosen = F.interpolate(chosen, size=tuple(output_size), mode="bilinear", align_corners=False)
    mask_probabilities = chosen.sigmoid()
    masks = mask_probabilities > mask_threshold
    inside = masks.to(mask_probabilities.dtype)
    mask_scores = (mask_probabilities * inside).flatten(2).sum(-1) / (inside.flatten(2).sum(-1) + 1e-6)
    return masks, classes, class_scores * mask_scores


class InstancePostprocess(nn.Module):
    """`instance_predictions` as a module, to append to a model for export.

    forward(class_logits (B, Q, C+1), mask_logits (B, Q, h, w)) -> masks (B, K, H, W) bool,
    classes (B, K) int64, scores (B, K).
    """

    def __init__(self, output_size: tuple[int, int] | None = None, top_k: int = 100,
                 mask_threshold: float = 0.5) -> None:
        super().__init__()
        self.output_size, self.top_k, self.mask_threshold = output_size, top_k, mask_threshold

    def forward(self, class_logits: torch.Tensor,
                mask_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return instance_predictions(class_logits, mask_logits, self.output_size, top_k=self.top_k,
                                    mask_threshold=self.mask_threshold)
