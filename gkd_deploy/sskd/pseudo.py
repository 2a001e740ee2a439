"""Pseudo-labels: the teacher's instances on the unlabelled pool, kept in the run folder.

A phase that trains on the pool (selftrain, transfer) first has the teacher label every pool image
once and writes the result, `RUN/pseudo/<phase>.json`, atomically; a resumed run reads it back
instead of labelling again. Only instances with score >= the threshold are kept (SSKD: 0.3), masks
at the image's own size as COCO run-length encodings (pycocotools), a few bytes per mask.

    {"teacher": "...", "threshold": 0.3, "images": [
        {"name": "...", "height": H, "width": W,
         "instances": [{"class": c, "score": s, "rle": "<COCO counts>"}, ...]}, ...]}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_util

from gkd_deploy.errors import DataError
from gkd_deploy.fileio import write_json
from gkd_deploy.instance.teacher import InstanceTeacher
from gkd_deploy.progress import Track, no_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePseudoLabels:
    """One pool image's kept instances: classes (N,) int64, scores (N,) float32, RLE counts per mask."""

    name: str
    height: int
    width: int
    classes: np.ndarray
    scores: np.ndarray
    rles: tuple[str, ...]

    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        if not self.rles:
            return np.zeros((0, self.height, self.width), bool)
        encoded = [{"size": [self.height, self.width], "counts": rle.encode("ascii")} for rle in self.rles]
        return mask_util.decode(encoded).transpose(2, 0, 1).astype(bool)


@dataclass(frozen=True)
class PseudoLabels:
    teacher: str
    threshold: float
    images: tuple[ImagePseudoLabels, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_instances(self) -> int:
        return sum(len(image.classes) for image in self.images)

    def to_dict(self) -> dict:
        return {"teacher": self.teacher, "threshold": self.threshold,
                "images": [{"name": i.name, "height": i.height, "width": i.width,
                            "instances": [{"class": int(c), "score": round(float(s), 6), "rle": r}
                                          for c, s, r in zip(i.classes, i.scores, i.rles)]} for i in self.images]}

    @classmethod
    def read(cls, path: Path, names: Sequence[str]) -> "PseudoLabels":
        """The labels at `path`, checked to be of the pool `names` (in order)."""
        try:
            data = json.loads(path.read_text())
            images = tuple(ImagePseudoLabels(
                entry["name"], int(entry["height"]), int(entry["width"]),
                np.array([i["class"] for i in entry["instances"]], np.int64),
                np.array([i["score"] for i in entry["instances"]], np.float32),
                tuple(i["rle"] for i in entry["instances"])) for entry in data["images"])
            labels = cls(str(data["teacher"]), float(data["threshold"]), images)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"pseudo-labels {path} cannot be read ({error.__class__.__name__}: {error}); delete the "
                            "file to label the pool again") from None
        if [image.name for image in labels.images] != list(names):
            raise DataError(f"pseudo-labels {path} are of other images than this run's unlabelled pool; delete the "
                            "file to label the pool again")
        return labels


def encode_masks(masks: np.ndarray) -> tuple[str, ...]:
    """(N, H, W) bool -> COCO RLE counts strings."""
    encoded = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return tuple(rle["counts"].decode("ascii") for rle in encoded)


def label_pool(teacher: InstanceTeacher, pool, threshold: float, teacher_name: str,
               track: Track = no_progress, description: str = "pseudo-labelling") -> PseudoLabels:
    """The teacher's instances with score >= `threshold` (and a non-empty mask) on every image of `pool`."""
    import torch

    images = []
    for index in track(range(len(pool)), description, len(pool)):
        sample = pool[index]
        height, width = sample.image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float()[None]
        (instances,) = teacher.pseudo_label(tensor)
        instances = instances.above(threshold)
        masks = instances.masks.cpu().numpy().astype(bool)
        keep = masks.any(axis=(1, 2))
        images.append(ImagePseudoLabels(sample.name, height, width, instances.classes.cpu().numpy()[keep].astype(np.int64),
                                        instances.scores.cpu().numpy()[keep].astype(np.float32),
                                        encode_masks(masks[keep]) if keep.any() else ()))
    labels = PseudoLabels(teacher_name, threshold, tuple(images))
    log.info("pseudo-labels: %d instances with score >= %.2f on %d images", labels.num_instances, threshold, len(labels))
    return labels


def write_pseudo_labels(labels: PseudoLabels, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, labels.to_dict())
    return path
