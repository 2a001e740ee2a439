"""Cityscapes-style instance ids from a rendered frame's label map and object map.

The rasteriser records, per pixel, which layout item set the label there (`Canvas.objects`).
Each (item, thing class) pair that shows in the frame becomes one instance: a rider on a bicycle
is a rider instance and a bicycle instance, as Cityscapes annotates them. The map is written as
Cityscapes writes `*_gtFine_instanceIds.png`:

    label id * 1000 + instance index   pixels of a thing object (index counted per class from 0,
                                        in the order of the items in the layout)
    label id                           every other pixel (stuff, and the ignored ego hood as 0)

Label ids come from the train ids through the official table, so `value // 1000` (or the value
itself below 1000) maps back to exactly the train id of the label map at every pixel.
"""

from __future__ import annotations

import numpy as np

from ..classes import (
    CITYSCAPES,
    CITYSCAPES_THING_NAMES,
    CITYSCAPES_TRAINID_TO_ID,
    CITYSCAPES_UNLABELED_ID,
    INSTANCE_ID_DIVISOR,
)

# Train id -> Cityscapes label id (255 and any other unused value -> unlabeled).
_LABEL_ID = np.full(256, CITYSCAPES_UNLABELED_ID, np.int32)
for _train_id, _label_id in CITYSCAPES_TRAINID_TO_ID.items():
    _LABEL_ID[_train_id] = _label_id
_IS_THING = np.zeros(256, bool)
_IS_THING[[CITYSCAPES.names.index(name) for name in CITYSCAPES_THING_NAMES]] = True


def instance_id_map(label: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """(H, W) uint8 train ids and (H, W) int32 object numbers (0 = none) -> (H, W) uint16 ids.

    Thing pixels with object number 0 (none here; a group region in real data) keep the plain
    label id, which is how Cityscapes marks crowds.
    """
    if label.shape != objects.shape:
        raise ValueError(f"label {label.shape} and object map {objects.shape} differ in size")
    out = _LABEL_ID[label]
    thing = _IS_THING[label] & (objects > 0)
    if thing.any():
        # One key per (object, class) pair; sorted by object first, so indices follow the layout.
        keys = objects[thing].astype(np.int64) * 256 + label[thing]
        pairs, inverse = np.unique(keys, return_inverse=True)
        classes = pairs % 256
        index = np.zeros(len(pairs), np.int64)
        counts: dict[int, int] = {}
        for k, train_id in enumerate(classes.tolist()):
            index[k] = counts.get(train_id, 0)
            counts[train_id] = index[k] + 1
        if index.max() >= INSTANCE_ID_DIVISOR:
            raise ValueError(f"more than {INSTANCE_ID_DIVISOR} instances of one class in a frame")
        values = _LABEL_ID[classes] * INSTANCE_ID_DIVISOR + index
        out[thing] = values[inverse.ravel()]
    return out.astype(np.uint16)
