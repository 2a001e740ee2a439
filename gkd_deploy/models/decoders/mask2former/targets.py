"""Semantic label maps -> Mask2Former's set targets: one binary mask per class present."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gkd_deploy.data.classes import IGNORE_INDEX


@dataclass(frozen=True)
class Targets:
    """The targets of one image: T classes present and their masks.

    classes: (T,) int64 train ids, ascending.
    masks: (T, H, W) float, 1 where the label is that class, else 0.
    """

    classes: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])


def semantic_targets(labels: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> list[Targets]:
    """(B, H, W) int64 train ids -> one `Targets` per image.

    Ignored pixels are 0 in every mask, i.e. background of every target (as Mask2Former's
    semantic mapper builds them): a query is never asked to cover them, and the point losses
    and costs count them as "not this class" for every mask. Any other value outside
    [0, num_classes) is an error rather than a silently dropped class.
    """
    targets = []
    for label in labels:
        classes = torch.unique(label)
        classes = classes[classes != ignore_index]
        if bool(((classes < 0) | (classes >= num_classes)).any()):
            raise ValueError(
                f"labels hold train ids {classes.tolist()} but the decoder has {num_classes} classes "
                f"(and ignores {ignore_index})"
            )
        masks = (label[None] == classes[:, None, None]).float()
        targets.append(Targets(classes, masks))
    return targets
