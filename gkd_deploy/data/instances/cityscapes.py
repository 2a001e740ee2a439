"""Cityscapes instances: `gtFine/<split>/<city>/*_gtFine_instanceIds.png` beside the semantic labels.

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (or _labelIds.png)
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

An instanceIds file holds 16-bit values: label id x 1000 + instance index on each annotated object
of a class with instances, the plain label id (< 1000) everywhere else. Instances are the objects
of the 8 thing classes (person, rider, car, truck, bus, train, motorcycle, bicycle; class indices
0-7, their train ids 11-18 in order). Values below 1000 of a thing class are crowd regions ("car
group"), not instances; objects of classes Cityscapes does not score (caravan, trailer) are
neither. Every pixel's label id must map, through the official id -> train id table, to the train
id of the semantic label at that pixel; a file that disagrees, or holds a label id Cityscapes does
not define, is a `DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_deploy.data.classes import (
    CITYSCAPES_ID_TO_TRAINID,
    CITYSCAPES_LABEL_ID_COUNT,
    CITYSCAPES_THING_IDS,
    CITYSCAPES_THING_NAMES,
    INSTANCE_ID_DIVISOR,
    id_lookup_table,
)
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.cityscapes import CityscapesDataset
from gkd_deploy.data.imread import read_label_ids
from gkd_deploy.data.instances.base import InstanceDataset
from gkd_deploy.data.instances.sample import InstanceTarget
from gkd_deploy.errors import DataError

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
LAYOUT = (
    "the Cityscapes layout leftImg8bit/{train,val}/<city>/*_leftImg8bit.png with "
    "gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png (or *_labelIds.png) and *_gtFine_instanceIds.png"
)

_TRAIN_ID = id_lookup_table(CITYSCAPES_ID_TO_TRAINID)  # label id -> train id (255 = ignore)
_THING_INDEX = np.full(CITYSCAPES_LABEL_ID_COUNT, -1, np.int64)  # label id -> class index 0-7, or -1
_THING_INDEX[list(CITYSCAPES_THING_IDS)] = np.arange(len(CITYSCAPES_THING_IDS))


class CityscapesInstanceDataset(InstanceDataset):
    """Cityscapes fine instance annotations with their semantic labels (one domain "cityscapes").

    Images without an instanceIds file are skipped and counted, like images without a label.
    """

    layout = LAYOUT

    def __init__(self, root: Path | str, split: str = "val", name: str = "cityscapes") -> None:
        # The semantic loader lists images and labels (and reads the labels, with its checks).
        self.semantic = CityscapesDataset(root, split, name=name)
        self.samples, self.instance_files, missing = [], [], 0
        known: dict[Path, set[str]] = {}
        for sample in self.semantic.samples:
            label_dir = sample.label.parent
            if label_dir not in known:
                known[label_dir] = set(listing.files(label_dir, (INSTANCE_SUFFIX.lower(),)))
            if sample.name + INSTANCE_SUFFIX not in known[label_dir]:
                missing += 1
                continue
            self.samples.append(sample)
            self.instance_files.append(label_dir / (sample.name + INSTANCE_SUFFIX))
        super().__init__(name, CITYSCAPES_THING_NAMES, [s.image for s in self.samples], [s.name for s in self.samples],
                         skipped={"image without instance ids": missing}, source=self.semantic.source)

    def load_target(self, index: int, image: np.ndarray) -> tuple[InstanceTarget, np.ndarray]:
        sample, path = self.samples[index], self.instance_files[index]
        semantic = self.semantic.load_label(sample, image.shape[:2])
        ids = read_label_ids(path)
        if ids.shape != semantic.shape:
            raise DataError(f"{self.name}: instance ids {path} are {ids.shape[1]}x{ids.shape[0]} but label {sample.label} "
                            f"is {semantic.shape[1]}x{semantic.shape[0]}; the files do not belong together (check "
                            "the pairing or regenerate them from the same annotation)")
        return decode_instance_ids(ids, path, semantic, sample.label), semantic


def decode_instance_ids(ids: np.ndarray, path: Path, semantic: np.ndarray | None = None,
                        label_path: Path | None = None) -> InstanceTarget:
    """(H, W) Cityscapes instance ids -> `InstanceTarget` over the 8 thing classes.

    Instances come in order of their value (class, then index). With `semantic` ((H, W) train
    ids), every pixel's label id must map to the train id there. `path` and `label_path` name the
    files in errors: a `DataError` for an unknown label id or a pixel where the two disagree.
    """
    values = ids.astype(np.int64, copy=False)
    present = np.flatnonzero(np.bincount(values.ravel(), minlength=1))
    label_ids = np.where(present >= INSTANCE_ID_DIVISOR, present // INSTANCE_ID_DIVISOR, present)
    unknown = present[label_ids >= CITYSCAPES_LABEL_ID_COUNT]
    if unknown.size:
        shown = ", ".join(str(int(v)) for v in unknown[:8]) + (", ..." if unknown.size > 8 else "")
        raise DataError(f"instance ids {path} hold value(s) [{shown}] whose label id Cityscapes does not define "
                        f"(0-{CITYSCAPES_LABEL_ID_COUNT - 1}); expected label id x 1000 + instance index, or a plain "
                        "label id, as cityscapesscripts writes *_gtFine_instanceIds.png")
    if semantic is not None:
        _check_against_semantic(values, present, label_ids, semantic, path, label_path)
    thing = _THING_INDEX[label_ids]
    objects = present[(present >= INSTANCE_ID_DIVISOR) & (thing >= 0)]
    crowd_values = present[(present < INSTANCE_ID_DIVISOR) & (thing >= 0)]
    masks = values[None] == objects[:, None, None]
    crowd = np.isin(values, crowd_values) if crowd_values.size else np.zeros(values.shape, bool)
    return InstanceTarget(masks, _THING_INDEX[objects // INSTANCE_ID_DIVISOR], crowd)


def _check_against_semantic(values: np.ndarray, present: np.ndarray, label_ids: np.ndarray, semantic: np.ndarray,
                            path: Path, label_path: Path | None) -> None:
    """Refuse instance ids whose label id maps to another train id than the semantic label's."""
    train_id = np.zeros(int(present[-1]) + 1, np.uint8)
    train_id[present] = _TRAIN_ID[label_ids]
    wrong = train_id[values] != semantic
    if not wrong.any():
        return
    y, x = (int(v[0]) for v in np.nonzero(wrong))
    value = int(values[y, x])
    label_id = value // INSTANCE_ID_DIVISOR if value >= INSTANCE_ID_DIVISOR else value
    against = f"label {label_path}" if label_path is not None else "the semantic label"
    raise DataError(f"instance ids {path} disagree with {against} at {int(wrong.sum())} pixel(s), first at x={x}, "
                    f"y={y}: value {value} is label id {label_id} (train id {int(_TRAIN_ID[label_id])}), the label "
                    f"says train id {int(semantic[y, x])}; regenerate both files from the same annotation")
