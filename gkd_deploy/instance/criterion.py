"""Mask2Former's set loss against instance targets (SSKD's L_sup and L_pseudo).

Per prediction (the final one and, for deep supervision, every entry of "aux_outputs", each
matched on its own, see `matching`):
    loss = 2 * CE(all queries; unmatched -> "no object", weighted 0.1)
         + 5 * BCE(matched masks) + 5 * dice(matched masks),
the mask terms on 12544 points per mask, 3/4 of them where the prediction is least certain
(Mask2Former's importance sampling) and the rest uniform, normalised by the number of instances
in the (global) batch. Points rather than masks at a reduced resolution: the loss then costs the
same for any target resolution, and thin instances (poles, distant people) are not erased by
downsampling. The terms are the semantic decoder's `SetCriterion`; only the targets differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gkd_deploy.errors import ConfigError
from gkd_deploy.instance.matching import CLASS_WEIGHT, DICE_WEIGHT, MASK_WEIGHT, Instances, instance_targets
from gkd_deploy.models.decoders.mask2former.criterion import SetCriterion
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler


#: Mask2Former's points: 112 * 112 per mask, 3x oversampled, 3/4 of them where least certain.
DEFAULT_POINTS = (12544, 3.0, 0.75)


class InstanceCriterion(nn.Module):
    """Instance set loss of a Mask2Former-style decoder's outputs.

    Args:
        num_classes: C thing classes (the class logits have C+1, the last "no object").
        sampler: the points of the matching costs and mask losses; None = `DEFAULT_POINTS`.
        class_weight, mask_weight, dice_weight: weights of the three terms in cost and loss.
        no_object_weight: cross-entropy weight of "no object".
    """

    def __init__(self, num_classes: int, sampler: PointSampler | None = None, *, class_weight: float = CLASS_WEIGHT,
                 mask_weight: float = MASK_WEIGHT, dice_weight: float = DICE_WEIGHT,
                 no_object_weight: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"instance criterion: num_classes must be at least 1, got {num_classes}")
        weights = {"class_weight": class_weight, "mask_weight": mask_weight, "dice_weight": dice_weight,
                   "no_object_weight": no_object_weight}
        negative = [name for name, value in weights.items() if value < 0]
        if negative:
            raise ConfigError(f"instance criterion: {', '.join(negative)} must be >= 0")
        self.num_classes = num_classes
        sampler = PointSampler(*DEFAULT_POINTS) if sampler is None else sampler
        self.set_criterion = SetCriterion(num_classes, sampler, **weights)

    def forward(self, outputs: dict[str, Any], instances: Sequence[Instances]) -> dict[str, torch.Tensor]:
        """Decoder outputs and the batch's instances -> losses.

        Args:
            outputs: {"pred_logits": (B, Q, C+1), "pred_masks": (B, Q, h, w), optional
                "aux_outputs": [the same per earlier prediction]} (`Mask2FormerDecoder.forward_train`).
            instances: B pairs (classes (N,) int64, masks (N, H, W) bool / float); N may be 0.

        Returns:
            {"loss": weighted sum over all predictions, with gradient; "ce", "mask", "dice": the
            final prediction's unweighted terms, detached}.
        """
        logits = outputs["pred_logits"]
        if len(instances) != logits.shape[0]:
            raise ValueError(f"instance criterion: {len(instances)} images of targets for a batch of "
                              f"{logits.shape[0]} predictions")
        return self.set_criterion.set_losses(outputs, instance_targets(instances, self.num_classes, logits.device))
