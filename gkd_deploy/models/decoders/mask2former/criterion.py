"""Mask2Former's set criterion, from semantic label maps (`forward`) or from any per-image mask
targets (`set_losses`, which the instance criterion of `gkd_deploy.instance` calls).

Per prediction (the final one and every auxiliary one, each matched on its own):
- ce: cross-entropy of all Q queries' class logits, unmatched queries towards "no object"
  (whose class weight is `no_object_weight`, so the many empty queries do not dominate);
- mask: sigmoid BCE of the matched queries' masks against their targets;
- dice: soft Dice loss of the same;
the mask terms on importance-sampled points and normalised by the number of target masks in the
(global) batch. The total is the weighted sum over all predictions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gkd_deploy.models.decoders.mask2former.matcher import hungarian_match
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler, point_sample
from gkd_deploy.models.decoders.mask2former.targets import Targets, semantic_targets


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """(N, P) point logits and targets -> mean BCE per mask, summed, / num_masks."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """(N, P) point logits and targets -> 1 - soft Dice (+1 smoothing) per mask, summed, / num_masks."""
    probs = logits.sigmoid()
    numerator = 2.0 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


class SetCriterion(nn.Module):
    """Matched set losses of all predictions, from semantic label maps or per-image targets.

    Args:
        num_classes: K (the logits have K+1, the last "no object").
        sampler: the points of the matching costs and the mask losses.
        class_weight, mask_weight, dice_weight: the weights of the three terms, used both in the
            matching cost and in the loss (2, 5, 5).
        no_object_weight: cross-entropy class weight of "no object" (0.1).
    """

    def __init__(self, num_classes: int, sampler: PointSampler, *, class_weight: float, mask_weight: float,
                 dice_weight: float, no_object_weight: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.sampler = sampler
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight
        # Not persistent: a fixed function of the options, kept out of checkpoints.
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, outputs: dict[str, Any], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """outputs of `forward_train`, labels (B, H, W) int64 (255 ignored) ->
        {"loss": weighted total over all predictions, "ce", "mask", "dice": the final prediction's
        unweighted terms, detached, for logging}."""
        return self.set_losses(outputs, semantic_targets(labels, self.num_classes))

    def set_losses(self, outputs: dict[str, Any], targets: list[Targets]) -> dict[str, torch.Tensor]:
        """outputs of `forward_train` and B `Targets` (masks at any resolution, on the outputs'
        device; an image may have none) -> the same dictionary as `forward`."""
        num_masks = self._num_masks(targets, outputs["pred_logits"].device)
        final = self.prediction_losses(outputs["pred_logits"], outputs["pred_masks"], targets, num_masks)
        total = self._weighted(final)
        for aux in outputs.get("aux_outputs", []):
            total = total + self._weighted(self.prediction_losses(aux["pred_logits"], aux["pred_masks"], targets,
                                                                  num_masks))
        return {"loss": total, **{name: value.detach() for name, value in final.items()}}

    def _weighted(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.class_weight * losses["ce"] + self.mask_weight * losses["mask"] + self.dice_weight * losses["dice"]

    @staticmethod
    def _num_masks(targets: list[Targets], device: torch.device) -> torch.Tensor:
        """Target masks per process, averaged over processes (so every rank divides by the same
        number, as if one process saw the global batch); at least 1."""
        count = torch.tensor(float(sum(len(t) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count.clamp(min=1.0)

    def prediction_losses(self, logits: torch.Tensor, masks: torch.Tensor, targets: list[Targets],
                          num_masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits (B, Q, K+1), masks (B, Q, h, w) -> {"ce", "mask", "dice"}, unweighted."""
        matches = hungarian_match(logits, masks, targets, self.sampler, class_weight=self.class_weight,
                                  mask_weight=self.mask_weight, dice_weight=self.dice_weight)
        batch_index = torch.cat([torch.full_like(queries, b) for b, (queries, _) in enumerate(matches)])
        batch_index = batch_index.to(logits.device)
        query_index = torch.cat([queries for queries, _ in matches]).to(logits.device)

        # Classes: every query defaults to "no object" (index K); matched ones get their target's class.
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch_index, query_index] = torch.cat(
            [target.classes[chosen.to(target.classes.device)] for target, (_, chosen) in zip(targets, matches)]
        ).to(logits.device)
        ce = F.cross_entropy(logits.float().transpose(1, 2), target_classes, self.class_weights)

        matched = masks[batch_index, query_index].float()[:, None]  # (N, 1, h, w)
        if matched.shape[0] == 0:  # no target in the batch: nothing to match, zero (still differentiable)
            zero = masks.sum() * 0.0
            return {"ce": ce, "mask": zero, "dice": zero}
        wanted = torch.cat(
            [target.masks[chosen.to(target.masks.device)] for target, (_, chosen) in zip(targets, matches)]
        )[:, None]  # (N, 1, H, W)
        with torch.no_grad():
            points = self.sampler.importance(matched.detach())  # (N, P, 2)
            point_targets = point_sample(wanted, points)[:, 0]  # (N, P)
        point_logits = point_sample(matched, points)[:, 0]  # (N, P)
        return {"ce": ce, "mask": sigmoid_ce_loss(point_logits, point_targets, num_masks),
                "dice": dice_loss(point_logits, point_targets, num_masks)}
