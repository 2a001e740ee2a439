"""An instance model's frames: the instances worth drawing, at each frame's own size, and what
`--labels` writes of them.

The model gives K slots per image (`InstancePredictor`: masks, classes, scores), most of them
low-scoring. Per frame we keep the slots scoring at least the threshold (`--score-threshold`,
default 0.5), best first, bring their masks back to the frame's size (nearest neighbour, as the
semantic labels) and drop masks left empty. Their order is their *instance index*: it picks the
colour an instance is drawn in and numbers it in the label outputs.

`--labels` keeps the Cityscapes layout, so that the files read back as ground truth does
(`data.instances.cityscapes.decode_instance_ids`): a 16-bit PNG whose pixels hold label id x 1000 +
instance index (0 where no instance is), the best-scoring instance on top where masks overlap; and
beside it a JSON of the instances with what a PNG cannot hold (scores, boxes). The label id is the
Cityscapes one for the Cityscapes thing classes, else the class index + 1 (0 stays "no instance").
numpy and OpenCV only: the exported-file path runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from gkd_deploy.data.classes import CITYSCAPES_THING_IDS, CITYSCAPES_THING_NAMES, INSTANCE_ID_DIVISOR, ClassSet
from gkd_deploy.errors import ConfigError
from gkd_deploy.infer import DEFAULT_SCORE_THRESHOLD
from gkd_deploy.infer.segment import FrameSegmenter
from gkd_deploy.runtime.base import InstancePredictor
# The instance ids' 16 bits hold label ids up to this (65 x 1000 + 999 > 65535).
MAX_LABEL_ID = (np.iinfo(np.uint16).max - (INSTANCE_ID_DIVISOR - 1)) // INSTANCE_ID_DIVISOR


def check_score_threshold(value: float) -> float:
    """`value` if it is a score (0 to 1), else ConfigError."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--score-threshold must be between 0 and 1 (an instance's score), got {value}")
    return value


@dataclass(frozen=True)
class FrameInstances:
    """The instances of one frame, best first: masks (N, H, W) bool, classes (N,) int64 (indices into
    the model's class set), scores (N,) float32."""

    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def above(cls, masks: np.ndarray, classes: np.ndarray, scores: np.ndarray, threshold: float) -> FrameInstances:
        """The K slots of one image -> those scoring at least `threshold`, best first (ties keep the
        model's order)."""
        kept = np.flatnonzero(scores >= threshold)
        kept = kept[np.argsort(-scores[kept], kind="stable")]
        return cls(masks[kept].astype(bool), classes[kept].astype(np.int64), scores[kept].astype(np.float32))

    def at_size(self, height: int, width: int) -> FrameInstances:
        """The masks resized to (height, width) by nearest neighbour; instances left empty dropped."""
        if self.masks.shape[1:] == (height, width):
            masks = self.masks
        elif not len(self):
            masks = np.zeros((0, height, width), bool)
        else:
            masks = np.stack([cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
                              for mask in self.masks]).astype(bool)
        present = masks.any(axis=(1, 2))  # (reshape(0, -1) fails for a frame without instances)
        return FrameInstances(masks[present], self.classes[present], self.scores[present])

    def boxes(self) -> np.ndarray:
        """(N, 4) int64 [left, top, right, bottom] in pixels, right and bottom exclusive (width = right - left)."""
        boxes = np.zeros((len(self), 4), np.int64)
        for i, mask in enumerate(self.masks):
            rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            boxes[i] = columns[0], rows[0], columns[-1] + 1, rows[-1] + 1
        return boxes


class InstanceFrameSegmenter(FrameSegmenter):
    """BGR uint8 frames -> the `FrameInstances` of each frame, at its own size (resize mode only:
    sliding windows average class scores, which an instance model does not give)."""

    def __init__(self, predictor: InstancePredictor, mode: str = "resize", size: tuple[int, int] | None = None,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        if mode != "resize":
            raise ConfigError(f"--mode {mode} averages class scores over windows, which an instance segmenter does "
                              "not give (its masks are of the whole input); use --mode resize")
        super().__init__(predictor, mode=mode, size=size)
        self.score_threshold = check_score_threshold(score_threshold)

    def _predict_images(self, images: np.ndarray) -> list[FrameInstances]:
        masks, classes, scores = self._timed(self.predictor, images)
        return [FrameInstances.above(masks[i], classes[i], scores[i], self.score_threshold) for i in range(len(images))]

    def _fit(self, instances: FrameInstances, frame_size: tuple[int, int]) -> FrameInstances:
        return instances.at_size(*frame_size)


def instance_label_ids(class_set: ClassSet) -> tuple[int, ...]:
    """The label id of each class in the instance-id PNG: Cityscapes' own for its thing classes,
    else class index + 1. ConfigError when they do not fit 16 bits."""
    if tuple(class_set.names) == CITYSCAPES_THING_NAMES:
        return tuple(CITYSCAPES_THING_IDS)
    if class_set.num_classes > MAX_LABEL_ID:
        raise ConfigError(f"--labels writes 16-bit Cityscapes instance ids (label id x {INSTANCE_ID_DIVISOR} + "
                          f"instance index), which hold {MAX_LABEL_ID} classes; this model has "
                          f"{class_set.num_classes} ({class_set.name}): leave out --labels")
    return tuple(range(1, class_set.num_classes + 1))


def instance_id_map(instances: FrameInstances, label_ids: Sequence[int]) -> np.ndarray:
    """(H, W) uint16: label id x 1000 + instance index on each instance, 0 elsewhere; where masks
    overlap the better-scoring instance wins. Only the first 1000 instances can be numbered."""
    height, width = instances.masks.shape[1:]
    ids = np.zeros((height, width), np.uint16)
    for index in reversed(range(min(len(instances), INSTANCE_ID_DIVISOR))):  # the best painted last
        ids[instances.masks[index]] = label_ids[int(instances.classes[index])] * INSTANCE_ID_DIVISOR + index
    return ids


def instance_records(instances: FrameInstances, class_set: ClassSet, label_ids: Sequence[int]) -> list[dict]:
    """The instances as JSON-able records: index, id (its value in the PNG, None past the 1000th),
    class name and index, score, box ([left, top, right, bottom], right and bottom exclusive) and
    area in pixels."""
    records = []
    for index, (mask, class_index, score, box) in enumerate(zip(instances.masks, instances.classes,
                                                                 instances.scores, instances.boxes())):
        class_index = int(class_index)
        records.append({
            "index": index,
            "id": label_ids[class_index] * INSTANCE_ID_DIVISOR + index if index < INSTANCE_ID_DIVISOR else None,
            "class": class_set.names[class_index], "class_index": class_index, "score": round(float(score), 4),
            "box": [int(v) for v in box], "area": int(mask.sum()),
        })
    return records
