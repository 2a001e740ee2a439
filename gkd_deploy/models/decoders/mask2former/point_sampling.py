"""Point sampling for the mask costs and losses: values of maps at continuous points, and where
to put the points.

Mask2Former computes its mask costs and losses on a few thousand points per mask instead of on
every pixel (PointRend's trick): the matching on uniformly random points, the losses on points
chosen mostly where the prediction is least certain. That keeps the memory of the loss
independent of the label resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps (N, C, H, W) at points (N, P, 2), (x, y) in [0, 1] -> (N, C, P).

    Coordinates follow `align_corners=False`: (0, 0) is the top-left corner of the first pixel
    and (1, 1) the bottom-right corner of the last, so one point hits the same place on a stride-4
    prediction and on a full-resolution label mask. Outside the outermost pixel centres the edge
    value is kept (border padding): zero padding would fade every mask, and drag every logit
    towards 0, in a half-pixel band around the map.
    """
    grid = 2.0 * points.unsqueeze(2).to(maps.dtype) - 1.0  # (N, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(3)


class PointSampler:
    """Where the mask costs and losses look: `num_points` points per mask.

    Args:
        num_points: P (Mask2Former: 112 * 112 = 12544).
        oversample_ratio: the importance sampler draws `oversample_ratio * P` random candidates.
        importance_sample_ratio: the share of P taken from the most uncertain candidates; the rest
            is drawn uniformly.
    """

    def __init__(self, num_points: int, oversample_ratio: float, importance_sample_ratio: float) -> None:
        self.num_points = num_points
        self.num_candidates = int(num_points * oversample_ratio)
        self.num_uncertain = min(int(num_points * importance_sample_ratio), self.num_candidates)

    def uniform(self, count: int, device: torch.device) -> torch.Tensor:
        """(count, P, 2) points drawn uniformly at random over the map."""
        return torch.rand(count, self.num_points, 2, device=device)

    def importance(self, logits: torch.Tensor) -> torch.Tensor:
        """Points for the mask loss of logits (N, 1, H, W) -> (N, P, 2).

        The uncertainty of a point is -|logit| (highest where the mask is undecided, near its
        boundary). Call without gradients: the choice of points is not differentiated.
        """
        count = logits.shape[0]
        candidates = torch.rand(count, self.num_candidates, 2, device=logits.device)
        uncertainty = -point_sample(logits, candidates).abs().squeeze(1)  # (N, candidates)
        chosen = uncertainty.topk(self.num_uncertain, dim=1).indices  # (N, uncertain)
        uncertain = candidates.gather(1, chosen[..., None].expand(-1, -1, 2))
        random = torch.rand(count, self.num_points - self.num_uncertain, 2, device=logits.device)
        return torch.cat((uncertain, random), dim=1)
