"""COCO-format instances: one JSON file of images, annotations and categories, and an image folder.

    <annotations>.json   {"images": [{"id", "file_name", "height", "width"}, ...],
                          "annotations": [{"id", "image_id", "category_id", "segmentation", "iscrowd"}, ...],
                          "categories": [{"id", "name"}, ...]}
    <images>/<file_name> for each image entry (file_name may hold sub-folders)

A segmentation is a list of polygons ([x0, y0, x1, y1, ...] in pixels) or a run-length encoding
({"size": [height, width], "counts": [...] uncompressed or "..." compressed}); pycocotools
decodes both. Category ids (any integers, with gaps as COCO has them) map to contiguous class
indices 0..C-1 in increasing id order; `category_ids[c]` is the id of class `c`. `iscrowd`
annotations are the crowd region, not instances.

ADE20K's instance release (its 100 thing classes), once converted to this format as the
Mask2Former tooling does (`ade20k_instance_{train,val}.json` with the `images/{training,validation}`
folders), loads with this loader as it is; so does any data set exported to COCO instances.

`coco_split(root, split)` finds a split's file and folder in the releases' own layouts (what
`coco=ROOT` names for training and evaluation): COCO 2017 (`annotations/instances_{split}2017.json`
and `{split}2017/`), the same without the year, and ADE20K's instance release as above.

The JSON is read with the standard library rather than pycocotools' `COCO` class, which prints
to standard output while it indexes; only the mask decoding uses pycocotools.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gkd_deploy.data.datasets import listing
from gkd_deploy.data.instances.base import InstanceDataset
from gkd_deploy.data.instances.sample import InstanceTarget
from gkd_deploy.errors import DataError

LAYOUT = ("a COCO instances JSON file (images, annotations, categories) and the image folder its "
          "file_name entries are relative to")


class CocoInstanceDataset(InstanceDataset):
    """The images of a COCO instances file that exist in `images`, sorted by file name.

    Images listed in the JSON but absent from the folder are skipped and counted; images with no
    annotation are kept (an empty target).
    """

    layout = LAYOUT

    def __init__(self, annotations: Path | str, images: Path | str, name: str = "coco") -> None:
        annotations, images = Path(annotations), Path(images)
        data = _read_json(annotations, name)
        listing.require_dir(images, name, self.layout)
        categories = sorted(_entries(data, "categories", annotations), key=lambda c: _field(c, "id", int, annotations))
        self.category_ids = tuple(int(c["id"]) for c in categories)
        class_of = {category: index for index, category in enumerate(self.category_ids)}
        entries = {_field(e, "id", int, annotations): e for e in _entries(data, "images", annotations)}
        self.annotations_file = annotations
        self._annotations: dict[int, list[Mapping[str, Any]]] = {image_id: [] for image_id in entries}
        for annotation in sorted(_entries(data, "annotations", annotations), key=lambda a: _field(a, "id", int, annotations)):
            image_id, category = (_field(annotation, k, int, annotations) for k in ("image_id", "category_id"))
            if image_id not in entries:
                raise DataError(f"{name}: annotation {annotation['id']} in {annotations} refers to image_id {image_id}, "
                                "which its images list does not have; add the image entry or drop the annotation")
            if category not in class_of:
                raise DataError(f"{name}: annotation {annotation['id']} in {annotations} has category_id {category}, "
                                "which its categories list does not define; add the category or drop the annotation")
            self._annotations[image_id].append({**annotation, "class": class_of[category]})
        on_disk = set(listing.walk_files(images, listing.IMAGE_SUFFIXES))
        kept = sorted((_field(e, "file_name", str, annotations), image_id) for image_id, e in entries.items())
        self.image_ids = [image_id for file_name, image_id in kept if file_name in on_disk]
        self._entries = entries
        super().__init__(name, [_field(c, "name", str, annotations) for c in categories],
                         [images / entries[i]["file_name"] for i in self.image_ids],
                         [str(Path(entries[i]["file_name"]).with_suffix("").as_posix()) for i in self.image_ids],
                         skipped={"image in the annotations but not in the folder": len(kept) - len(self.image_ids)},
                         source=images)

    def load_target(self, index: int, image: np.ndarray) -> tuple[InstanceTarget, None]:
        image_id = self.image_ids[index]
        height, width = image.shape[:2]
        entry = self._entries[image_id]
        if (entry.get("height", height), entry.get("width", width)) != (height, width):
            raise DataError(f"{self.name}: image {self.images[index]} is {width}x{height} but {self.annotations_file} "
                            f"gives {entry['width']}x{entry['height']} for it; fix the image entry or the image")
        masks, classes, crowd = [], [], np.zeros((height, width), bool)
        for annotation in self._annotations[image_id]:
            mask = decode_segmentation(annotation.get("segmentation"), height, width,
                                       f"annotation {annotation['id']} in {self.annotations_file}")
            if annotation.get("iscrowd", 0):
                crowd |= mask
            else:
                masks.append(mask)
                classes.append(annotation["class"])
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), bool)
        return InstanceTarget(stacked, np.asarray(classes, np.int64), crowd), None


def decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """A COCO segmentation (polygons, or RLE compressed or not) -> (height, width) bool mask.

    `where` names the annotation in errors ("annotation 7 in instances.json").
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise DataError("decoding COCO masks needs pycocotools, which is not installed: "
                        "pip install 'gkd-deploy[train]'") from None

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), bool)
        for polygon in segmentation:
            # pycocotools reads a 4-number list as a box, not a polygon: insist on 3 points or more.
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                raise DataError(f"{where}: a polygon must be a list of 3 or more x, y pairs, got {str(polygon)[:60]}; "
                                "fix or drop the annotation")
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise DataError(f"{where}: its RLE size {list(segmentation['size'])} is not the image's [{height}, {width}] "
                            "(height, width); re-export the annotation for this image")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(dict(segmentation), height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise DataError(f"{where}: segmentation must be a list of polygons or an RLE {{size, counts}}, got "
                        f"{type(segmentation).__name__}; fix or drop the annotation")
    with warnings.catch_warnings():
        # pycocotools 2.0.x builds its output with a numpy 1 `__array__` signature; numpy 2 warns
        # about it on every call, and the decoded values are right.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return mask_utils.decode(rle).astype(bool)


def _read_json(path: Path, name: str) -> Mapping[str, Any]:
    if not path.is_file():
        state = "is not a file" if path.exists() else "not found"
        raise DataError(f"{name}: annotation file {path} {state}; expected {LAYOUT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{name}: cannot read {path} as JSON ({exc}); re-export or re-download it") from exc
    if not isinstance(data, Mapping):
        raise DataError(f"{name}: {path} holds a JSON {type(data).__name__}, not an object; expected {LAYOUT}")
    return data


def _entries(data: Mapping[str, Any], key: str, path: Path) -> list[Mapping[str, Any]]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise DataError(f"{path} has no list of objects under '{key}'; it is not a COCO instances file "
                        "(those hold images, annotations and categories)")
    return entries


def _field(entry: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: entry {dict(entry)!s:.80} has no {kind.__name__} '{key}'; fix the entry")
    return value


def split_layouts(root: Path, split: str) -> tuple[tuple[Path, Path], ...]:
    """(annotations file, image folder) of `split` in the COCO-format layouts, in the order tried."""
    ade20k = {"train": "training", "val": "validation"}.get(split, split)
    return ((root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017"),
            (root / "annotations" / f"instances_{split}.json", root / split),
            (root / f"ade20k_instance_{split}.json", root / "images" / ade20k))


def coco_split(root: Path | str, split: str = "val", name: str = "coco") -> CocoInstanceDataset:
    """The `split` of a COCO-format release under `root` (COCO 2017, or ADE20K's instance release);
    DataError naming the files it looked for when none is there."""
    root = Path(root)
    listing.require_dir(root, name, "a COCO-format release: annotations/instances_<split>2017.json and <split>2017/, "
                                    "or ADE20K's ade20k_instance_<split>.json and images/")
    layouts = split_layouts(root, split)
    for annotation_file, images in layouts:
        if annotation_file.is_file():
            return CocoInstanceDataset(annotation_file, images, name=name)
    tried = ", ".join(str(annotation_file.relative_to(root)) for annotation_file, _ in layouts)
    raise DataError(f"{name}: no {split} annotations in {root}: looked for {tried} (COCO 2017, or ADE20K's instance "
                    "release as Mask2Former's preparation script writes it)")
