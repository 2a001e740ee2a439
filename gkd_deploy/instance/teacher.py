"""What a teacher gives semi-supervised instance distillation: instances on unlabelled images.

`InstanceTeacher` is the one interface the recipe labels its pool with: the project's own
instance segmenter (`SegmenterTeacher`, trainable on the labelled set) or the composite zero-shot
teacher of the paper (Grounding-DINO boxes + SAM2 masks, `instance.grounded_sam`). Each returns,
per image, classes, masks at the image's own size and scores; the recipe keeps those with a score
at or above its threshold (SSKD: 0.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class PseudoInstances:
    """One image's teacher instances: classes (N,) int64 in 0..C-1, masks (N, H, W) bool at the
    image's size, scores (N,) float32 in [0, 1]."""

    classes: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor

    def above(self, threshold: float) -> "PseudoInstances":
        """The instances with score >= threshold."""
        keep = self.scores >= threshold
        return PseudoInstances(self.classes[keep], self.masks[keep], self.scores[keep])

    def __len__(self) -> int:
        return int(self.classes.shape[0])


class InstanceTeacher(Protocol):
    class_names: tuple[str, ...]

    def pseudo_label(self, images: torch.Tensor) -> list[PseudoInstances]:
        """images (B, 3, H, W) float RGB 0..255 -> one `PseudoInstances` per image."""
        ...


class SegmenterTeacher:
    """An `InstanceSegmenter` as a teacher: each image resized to the model's input size for it
    (its config's img_size on the short side, as `gkd eval` runs it), masks brought back to the
    image's size."""

    def __init__(self, model: torch.nn.Module) -> None:
        from gkd_deploy.runtime.torch_backend import TorchInstancePredictor

        self.predictor = TorchInstancePredictor.of_model(model.eval())
        self.class_names = tuple(model.class_set.names)

    def pseudo_label(self, images: torch.Tensor) -> list[PseudoInstances]:
        from gkd_deploy.evaluation.instances import checkpoint_input_size, predict_image

        config = self.predictor.model.config
        out = []
        for image in images:
            array = image.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).cpu().numpy()
            size = checkpoint_input_size(config.img_size, config.patch_size, *array.shape[:2])
            masks, classes, scores = predict_image(self.predictor, array, size)
            out.append(PseudoInstances(torch.from_numpy(np.asarray(classes, np.int64)), torch.from_numpy(masks),
                                       torch.from_numpy(np.asarray(scores, np.float32))))
        return out
