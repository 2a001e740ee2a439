"""Training batches of instances: labelled images with their annotations, pool images with pseudo-labels.

Each image's instances travel as an instance-id map (0 = none, k = the k-th instance, 1..254) with
a class per id, so that one geometric augmentation (stage 3's `TaskTransform`: short side x
0.5-2.0, crop, flip; here without photometric changes, the strong view adds those) moves image and
instances together, and batches have fixed shapes. Overlapping pseudo-masks are painted in order of
increasing score, so a pixel belongs to the most confident instance (ground-truth instances do not
overlap). An image with more than 254 instances keeps the 254 largest (ground truth) or most
confident (pseudo-labels). Instances a crop cuts away are dropped when the batch becomes targets
(`batch_instances`).

The order of items is `GlobalBatchSampler`'s: a pure function of (seed, step), the same for one
process and for several, and for a resumed run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gkd_deploy.data.instances.sample import InstanceSample
from gkd_deploy.data.transforms import TaskTransform
from gkd_deploy.errors import DataError
from gkd_deploy.sskd.pseudo import PseudoLabels
from gkd_deploy.training.sampling import GlobalBatchSampler

MAX_INSTANCES = 254  # ids 1..254; 255 is the transform's padding (no instance)
PADDING_ID = 255


def instance_id_map(masks: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks painted in `order` (later ones on top) -> (H, W) uint8 map of id k + 1
    for mask k, 0 where none."""
    ids = np.zeros(masks.shape[1:], np.uint8)
    for k in order:
        ids[masks[k]] = k + 1
    return ids


def _kept(values: np.ndarray) -> np.ndarray:
    """Indices of the (at most MAX_INSTANCES) instances with the largest `values`, in increasing order of value."""
    order = np.argsort(values, kind="stable")
    return order[-MAX_INSTANCES:]


def encode_instances(masks: np.ndarray, classes: np.ndarray, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Instances -> (id map (H, W) uint8, classes (MAX_INSTANCES,) int64 with -1 past the last)."""
    ranking = scores if scores is not None else masks.reshape(len(masks), -1).sum(1)
    kept = _kept(np.asarray(ranking)) if len(masks) else np.zeros(0, np.int64)
    ids = instance_id_map(masks[kept], np.arange(len(kept)))
    padded = np.full(MAX_INSTANCES, -1, np.int64)
    padded[:len(kept)] = classes[kept]
    return ids, padded


class InstanceItems(Dataset):
    """`items[(index, seed)]`: image `index` of a labelled set or of the pool (with `pseudo`),
    augmented by `transform` reseeded with `seed` -> {"image": (3, h, w) uint8, "ids": (h, w) uint8,
    "classes": (MAX_INSTANCES,) int64}."""

    def __init__(self, images: Dataset, transform: TaskTransform, pseudo: PseudoLabels | None = None) -> None:
        if pseudo is not None and len(pseudo) != len(images):
            raise DataError(f"{len(pseudo)} pseudo-labelled images for a pool of {len(images)}")
        self.images, self.transform, self.pseudo = images, transform, pseudo

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        sample: InstanceSample = self.images[index]
        if self.pseudo is not None:
            labels = self.pseudo.images[index]
            ids, classes = encode_instances(labels.masks(), labels.classes, labels.scores)
        else:
            if sample.target is None:
                raise DataError(f"{sample.name}: an image of the labelled set came without instances")
            ids, classes = encode_instances(sample.target.masks, sample.target.classes, None)
        self.transform.reseed(seed)
        image, ids = self.transform(sample.image, ids)
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "ids": torch.from_numpy(ids), "classes": torch.from_numpy(classes)}


def instance_transform(crop_size: int, short_side: int) -> TaskTransform:
    """Random short-side resize, crop and flip; no class balancing of crops, no photometric change."""
    return TaskTransform((crop_size, crop_size), short_side, cat_max_ratio=1.0, photometric=False)


def instance_loader(items: InstanceItems, *, global_batch: int, seed: int, steps: int, start_step: int, rank: int,
                    world_size: int, workers: int, pin_memory: bool) -> DataLoader:
    sampler = GlobalBatchSampler(len(items), global_batch, seed=seed, steps=steps, start_step=start_step,
                                 rank=rank, world_size=world_size)
    return DataLoader(items, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=False)


def batch_instances(ids: torch.Tensor, classes: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A batch's id maps (B, h, w) and padded classes (B, MAX_INSTANCES) -> per image (classes (N,),
    masks (N, h, w) bool) of the instances still visible in the crop."""
    out = []
    for image_ids, image_classes in zip(ids, classes):
        count = int((image_classes >= 0).sum())
        masks = image_ids.unsqueeze(0) == torch.arange(1, count + 1, device=ids.device, dtype=ids.dtype)[:, None, None]
        visible = masks.flatten(1).any(1)
        out.append((image_classes[:count][visible], masks[visible]))
    return out
