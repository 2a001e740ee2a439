"""Mapillary Vistas v1.2: `{training,validation}/images/*.jpg` with `{training,validation}/labels/*.png`.

Labels are ids into the "labels" list of the root `config.json` (66 classes in v1.2). They are
mapped to the 19 Cityscapes classes by class *name*, so the table below stays right whatever order
a config lists its classes in; classes without a Cityscapes counterpart become 255.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gkd_deploy.data.base import Sample, SegmentationDataset, Transform
from gkd_deploy.data.classes import CITYSCAPES, IGNORE_INDEX
from gkd_deploy.data.datasets import listing
from gkd_deploy.data.datasets.pairing import pair_by_stem
from gkd_deploy.errors import DataError

SPLIT_FOLDERS = {"train": "training", "val": "validation"}

# Mapillary class name -> Cityscapes class name. A key ending in "--*" matches every name that
# starts with the part before "*". Follows the Cityscapes definitions: lane markings and
# crosswalks are painted road, curbs belong to the sidewalk, street lights are poles.
MAPILLARY_TO_CITYSCAPES: dict[str, str] = {
    "construction--flat--road": "road",
    "construction--flat--bike-lane": "road",
    "construction--flat--service-lane": "road",
    "construction--flat--crosswalk-plain": "road",
    "marking--*": "road",
    "construction--flat--sidewalk": "sidewalk",
    "construction--flat--pedestrian-area": "sidewalk",
    "construction--flat--curb-cut": "sidewalk",
    "construction--barrier--curb": "sidewalk",  # v1.2 name
    "construction--flat--curb": "sidewalk",  # later name
    "construction--structure--building": "building",
    "construction--barrier--wall": "wall",
    "construction--barrier--fence": "fence",
    "object--support--pole": "pole",
    "object--support--utility-pole": "pole",
    "object--street-light": "pole",
    "object--traffic-light": "traffic light",
    "object--traffic-sign--front": "traffic sign",
    "object--traffic-sign--back": "traffic sign",
    "nature--vegetation": "vegetation",
    "nature--terrain": "terrain",
    "nature--sky": "sky",
    "human--person": "person",
    "human--rider--*": "rider",
    "object--vehicle--car": "car",
    "object--vehicle--truck": "truck",
    "object--vehicle--bus": "bus",
    "object--vehicle--on-rails": "train",
    "object--vehicle--motorcycle": "motorcycle",
    "object--vehicle--bicycle": "bicycle",
}


def cityscapes_train_id(mapillary_name: str) -> int:
    """The Cityscapes train id of a Mapillary class name, or 255 when it has none."""
    target = MAPILLARY_TO_CITYSCAPES.get(mapillary_name)
    if target is None:
        target = next(
            (v for k, v in MAPILLARY_TO_CITYSCAPES.items() if k.endswith("*") and mapillary_name.startswith(k[:-1])),
            None,
        )
    return IGNORE_INDEX if target is None else CITYSCAPES.names.index(target)


def load_class_names(config_path: Path) -> list[str]:
    """The class names of a Mapillary `config.json`, in label-id order."""
    if not config_path.is_file():
        raise DataError(
            f"mapillary: {config_path} not found; Mapillary Vistas keeps its class list in config.json "
            "at the data set root (next to training/ and validation/): extract it from the release zip"
        )
    try:
        labels = json.loads(config_path.read_text(encoding="utf-8"))["labels"]
        return [str(entry["name"]) for entry in labels]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"mapillary: cannot read the class list from {config_path} ({exc!r}); expected JSON with a "
            '"labels" list of {"name": ...} entries, as in the Mapillary Vistas v1.2 release'
        ) from exc


class MapillaryDataset(SegmentationDataset):
    """Mapillary Vistas v1.2 with labels mapped to the 19 Cityscapes classes, one domain "mapillary"."""

    layout = (
        "the Mapillary Vistas v1.2 layout config.json plus {training,validation}/images/*.jpg with "
        "labels {training,validation}/labels/*.png"
    )
    eval_size = (1024, 512)

    def __init__(
        self, root: Path | str, split: str = "val", transform: Transform | None = None, name: str = "mapillary"
    ) -> None:
        root = Path(root)
        listing.require_dir(root, name, self.layout)
        folder = SPLIT_FOLDERS.get(split, split)
        image_dir = listing.require_dir(root / folder / "images", name, self.layout)
        label_dir = listing.require_dir(root / folder / "labels", name, self.layout)
        self.mapillary_names = load_class_names(root / "config.json")
        if len(self.mapillary_names) > 256:
            raise DataError(
                f"{name}: {root / 'config.json'} lists {len(self.mapillary_names)} classes; "
                "8-bit labels hold at most 256"
            )
        self._id_table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        self._id_table[: len(self.mapillary_names)] = [cityscapes_train_id(n) for n in self.mapillary_names]
        samples, missing = pair_by_stem(image_dir, label_dir, (".jpg", ".jpeg", ".png"), (".png",))
        skipped = {"image without label": missing}
        super().__init__(name, CITYSCAPES, samples, skipped=skipped, transform=transform, source=root / folder)

    def convert_label(self, raw: np.ndarray, sample: Sample) -> np.ndarray:
        # An id past the end of the class list means the labels and config.json do not belong together.
        if int(raw.max(initial=0)) >= len(self.mapillary_names):
            raise self.unexpected_values(
                sample.label,
                np.unique(raw[raw >= len(self.mapillary_names)]),
                f"label ids 0-{len(self.mapillary_names) - 1} of the classes in config.json "
                "(are these v2.0 labels with a v1.2 config?)",
            )
        return self._id_table[raw]
