"""Class sets: names, colours and the ignore label shared by data sets, metrics and exports."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """The classes a segmenter predicts, in train-id order.

    `palette[i]` is the RGB colour of class `i`; label maps hold train ids and `IGNORE_INDEX`.
    """

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.names) != len(self.palette):
            raise ValueError(f"class set {self.name!r}: {len(self.names)} names, {len(self.palette)} colours")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) uint8 RGB; ignored pixels are black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return lut[label]


CITYSCAPES = ClassSet(
    name="cityscapes",
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    ),
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)

# Cityscapes label ids -> train ids (the official table; every other id is ignored).
# GTAV labels use the same ids.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# Train ids -> Cityscapes label ids (the table above read backwards); ignored pixels -> 0 (unlabeled).
CITYSCAPES_TRAINID_TO_ID: dict[int, int] = {train_id: raw_id for raw_id, train_id in CITYSCAPES_ID_TO_TRAINID.items()}
CITYSCAPES_UNLABELED_ID = 0
# Cityscapes defines label ids 0-33 (and -1, license plate, which no label file holds).
CITYSCAPES_LABEL_ID_COUNT = 34

# The 8 classes Cityscapes instance segmentation scores, in train-id order (train ids 11-18).
CITYSCAPES_THING_NAMES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# The thing classes as an instance segmenter's class set (class index i = thing i), in Cityscapes' colours.
CITYSCAPES_THINGS = ClassSet(
    name="cityscapes-things", names=CITYSCAPES_THING_NAMES,
    palette=tuple(CITYSCAPES.palette[CITYSCAPES.names.index(name)] for name in CITYSCAPES_THING_NAMES),
)
# `*_instanceIds.png` values: label id * 1000 + instance index for each object of a thing class;
# smaller values are a plain label id (stuff, unlabelled, and crowd regions of thing classes).
INSTANCE_ID_DIVISOR = 1000
# Their label ids: 24, 25, 26, 27, 28, 31, 32, 33.
CITYSCAPES_THING_IDS = tuple(CITYSCAPES_TRAINID_TO_ID[CITYSCAPES.names.index(n)] for n in CITYSCAPES_THING_NAMES)

ISPRS = ClassSet(
    name="isprs",
    names=("impervious surfaces", "building", "low vegetation", "tree", "car", "clutter"),
    palette=((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)),
)

CLASS_SETS: dict[str, ClassSet] = {c.name: c for c in (CITYSCAPES, ISPRS)}


def named_class_set(name: str, names: tuple[str, ...]) -> ClassSet:
    """The class set of a data set that brings only its class names (COCO-format files): the
    Cityscapes thing classes where the names are theirs, else `names` in distinct colours (hues a
    golden angle apart, so that neighbouring classes differ)."""
    names = tuple(names)
    if names == CITYSCAPES_THINGS.names:
        return CITYSCAPES_THINGS
    palette = []
    for index in range(len(names)):
        red, green, blue = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
        palette.append((round(red * 255), round(green * 255), round(blue * 255)))
    return ClassSet(name=name, names=names, palette=tuple(palette))


def id_lookup_table(mapping: dict[int, int], ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A 256-entry uint8 table that maps raw label ids to train ids (`ignore_index` elsewhere)."""
    table = np.full(256, ignore_index, dtype=np.uint8)
    for raw_id, train_id in mapping.items():
        table[raw_id] = train_id
    return table


def class_set_to_dict(class_set: ClassSet) -> dict:
    """The JSON form a checkpoint's or an exported file's config holds."""
    return {"name": class_set.name, "names": list(class_set.names), "palette": [list(c) for c in class_set.palette],
            "ignore_index": class_set.ignore_index}


def class_set_from_dict(raw: dict) -> ClassSet:
    """`class_set_to_dict` read back; KeyError, TypeError or ValueError when malformed."""
    return ClassSet(name=str(raw["name"]), names=tuple(raw["names"]),
                    palette=tuple(tuple(int(v) for v in c) for c in raw["palette"]),
                    ignore_index=int(raw.get("ignore_index", IGNORE_INDEX)))
