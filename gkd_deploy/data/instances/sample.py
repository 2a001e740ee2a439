"""What an instance-segmentation data set gives per image, the same for every loader.

`InstanceTarget` holds the annotated objects: one boolean mask and one class index per instance,
plus the crowd region (thing pixels annotated as a group, not as objects: Cityscapes values below
1000 of a thing class, COCO's `iscrowd` annotations), which set losses and AP leave out.
`InstanceSample` is the image with its target, or without one for the unlabelled pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InstanceTarget:
    """masks (N, H, W) bool, classes (N,) int64 in 0..C-1, crowd (H, W) bool."""

    masks: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != np.bool_:
            raise ValueError(f"masks must be (N, H, W) bool, got {self.masks.shape} {self.masks.dtype}")
        if self.classes.shape != (len(self.masks),) or self.classes.dtype != np.int64:
            raise ValueError(f"classes must be ({len(self.masks)},) int64, got {self.classes.shape} {self.classes.dtype}")
        if self.crowd.shape != self.masks.shape[1:] or self.crowd.dtype != np.bool_:
            raise ValueError(f"crowd must be {self.masks.shape[1:]} bool, got {self.crowd.shape} {self.crowd.dtype}")

    @classmethod
    def empty(cls, height: int, width: int) -> InstanceTarget:
        """No instances and no crowd in an image of `height` x `width`."""
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.int64), np.zeros((height, width), bool))

    def __len__(self) -> int:
        return len(self.masks)


@dataclass(frozen=True)
class InstanceSample:
    """One image of an instance data set.

    image (H, W, 3) uint8 RGB; name unique within the data set; target None for an image of the
    unlabelled pool; semantic (H, W) uint8 train ids (255 = ignore) where the data set has a
    semantic label beside its instances (Cityscapes), else None.
    """

    image: np.ndarray
    name: str
    target: InstanceTarget | None = None
    semantic: np.ndarray | None = None

    @property
    def labelled(self) -> bool:
        return self.target is not None
