"""Hungarian matching of predicted masks to target masks, one image at a time.

The cost of giving target t to query q is
    class_weight * (-p_q(class_t)) + mask_weight * BCE(mask_q, mask_t) + dice_weight * dice(mask_q, mask_t),
with p_q the softmax over K+1 classes and both mask terms on the same uniformly random points
for every query and target of the image. `scipy.optimize.linear_sum_assignment` then picks the
one-to-one assignment of least total cost (Q >= T: every target gets a query).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler, point_sample
from gkd_deploy.models.decoders.mask2former.targets import Targets


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every prediction against every target: (Q, P), (T, P) -> (Q, T).

    BCE(x, y) = y * softplus(-x) + (1 - y) * softplus(x), so the all-pairs sum is two matmuls.
    """
    positive = F.softplus(-logits)  # the loss where the target is 1
    negative = F.softplus(logits)  # the loss where the target is 0
    return (positive @ targets.T + negative @ (1.0 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice (with +1 smoothing) of every prediction against every target: (Q, T)."""
    probs = logits.sigmoid()
    numerator = 2.0 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor, masks: torch.Tensor, targets: list[Targets], sampler: PointSampler, *,
    class_weight: float, mask_weight: float, dice_weight: float,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Match each image's targets to queries.

    Args:
        logits: (B, Q, K+1) class logits.
        masks: (B, Q, h, w) mask logits.
        targets: B `Targets`, masks at any resolution (the points are in relative coordinates).
        sampler: gives the random points of the mask costs.

    Returns:
        B pairs (query indices, target indices), int64 on the CPU, of length T each.
    """
    matches = []
    # Costs in fp32 even under bf16 autocast: near-ties must not be decided by rounding.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        for image_logits, image_masks, target in zip(logits, masks, targets):
            num_queries, count = image_masks.shape[0], len(target)
            if count == 0:
                matches.append((torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))
                continue
            cost_class = -image_logits.float().softmax(-1)[:, target.classes]  # (Q, T)
            points = sampler.uniform(1, image_masks.device)  # the same points for all Q and T
            predicted = point_sample(image_masks[:, None].float(), points.expand(num_queries, -1, -1))[:, 0]
            wanted = point_sample(target.masks[:, None].float(), points.expand(count, -1, -1))[:, 0]
            cost = (class_weight * cost_class + mask_weight * pairwise_sigmoid_ce(predicted, wanted)
                    + dice_weight * pairwise_dice(predicted, wanted))
            queries, chosen = linear_sum_assignment(cost.cpu().numpy())
            matches.append((torch.as_tensor(queries, dtype=torch.int64), torch.as_tensor(chosen, dtype=torch.int64)))
    return matches
