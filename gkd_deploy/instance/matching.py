"""Instance targets for Mask2Former's set loss, and the Hungarian matching of queries to them.

An image's instances are a pair (classes (N,) int64, masks (N, H, W) bool or float), N >= 0, at
any resolution: the costs and losses look at the masks through points in relative coordinates
(`point_sample`), so targets at the input resolution and predictions at stride 4 meet without
resizing either. The matching itself is the semantic decoder's (`hungarian_match`): the same cost,
    2 * (-p_q(class_t)) + 5 * BCE(mask_q, mask_t) + 5 * dice(mask_q, mask_t),
on uniformly random points shared by all queries and targets of an image, solved by
`scipy.optimize.linear_sum_assignment`. With more instances than queries (N > Q, possible with
dense pseudo-labels) only Q of them are matched: the rest go unlearnt in that step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gkd_deploy.errors import DataError
from gkd_deploy.models.decoders.mask2former.matcher import hungarian_match
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler
from gkd_deploy.models.decoders.mask2former.targets import Targets

#: One image's instances: classes (N,) int64 and masks (N, H, W) bool or float.
Instances = tuple[torch.Tensor, torch.Tensor]

#: Mask2Former's matching-cost (and loss) weights.
CLASS_WEIGHT, MASK_WEIGHT, DICE_WEIGHT = 2.0, 5.0, 5.0


def instance_targets(instances: Sequence[Instances], num_classes: int,
                     device: torch.device | str) -> list[Targets]:
    """Per-image (classes, masks) -> `Targets` on `device`, masks as float 0 / 1.

    DataError when an image's classes and masks disagree in number, its masks are not (N, H, W),
    or a class lies outside [0, num_classes) (a data set with more classes than the model).
    """
    targets = []
    for index, (classes, masks) in enumerate(instances):
        if classes.ndim != 1 or masks.ndim != 3 or classes.shape[0] != masks.shape[0]:
            raise DataError(f"image {index} of the batch: instance classes {tuple(classes.shape)} and masks "
                            f"{tuple(masks.shape)} do not pair up; expected (N,) and (N, H, W)")
        if classes.numel() and bool(((classes < 0) | (classes >= num_classes)).any()):
            raise DataError(f"image {index} of the batch: instance classes {sorted(set(classes.tolist()))} "
                            f"but the model has {num_classes} classes (0 to {num_classes - 1})")
        targets.append(Targets(classes.to(device=device, dtype=torch.int64), masks.to(device=device,
                                                                                      dtype=torch.float32)))
    return targets


def match_instances(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, instances: Sequence[Instances], *,
    num_points: int = 12544, class_weight: float = CLASS_WEIGHT, mask_weight: float = MASK_WEIGHT,
    dice_weight: float = DICE_WEIGHT,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The least-cost assignment of each image's instances to queries.

    Args:
        class_logits: (B, Q, C+1), the last class "no object".
        mask_logits: (B, Q, h, w).
        instances: B pairs (classes (N,), masks (N, H, W)).
        num_points: random points per image for the mask costs (Mask2Former's 112 * 112).

    Returns:
        B pairs (query indices, instance indices), int64 on the CPU, min(N, Q) long: query
        `queries[i]` predicts instance `chosen[i]`.
    """
    targets = instance_targets(instances, class_logits.shape[-1] - 1, mask_logits.device)
    return hungarian_match(class_logits, mask_logits, targets, PointSampler(num_points, 1.0, 0.0),
                           class_weight=class_weight, mask_weight=mask_weight, dice_weight=dice_weight)
