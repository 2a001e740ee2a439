"""Instance-segmentation data: loaders that give per-instance masks and classes, and label splits.

    CityscapesInstanceDataset(root, split)        gtFine *_instanceIds.png, 8 thing classes
    CocoInstanceDataset(annotations, images)      COCO instances JSON (also ADE20K's instances)
    split_dataset(dataset, fraction, seed)        nested labelled set + unlabelled image pool

Every loader's `dataset[i]` is an `InstanceSample` (image, `InstanceTarget` of masks (N, H, W)
bool and classes (N,) int64, and the semantic label where there is one).
"""

from gkd_deploy.data.instances.base import InstanceDataset
from gkd_deploy.data.instances.cityscapes import CityscapesInstanceDataset, decode_instance_ids
from gkd_deploy.data.instances.coco import CocoInstanceDataset, decode_segmentation
from gkd_deploy.data.instances.sample import InstanceSample, InstanceTarget
from gkd_deploy.data.instances.splits import (
    DEFAULT_LABEL_FRACTION,
    LABEL_FRACTIONS,
    InstanceSubset,
    LabelSplit,
    check_label_fraction,
    split_dataset,
    split_indices,
)

__all__ = [
    "DEFAULT_LABEL_FRACTION",
    "LABEL_FRACTIONS",
    "CityscapesInstanceDataset",
    "CocoInstanceDataset",
    "InstanceDataset",
    "InstanceSample",
    "InstanceSubset",
    "InstanceTarget",
    "LabelSplit",
    "check_label_fraction",
    "decode_instance_ids",
    "decode_segmentation",
    "split_dataset",
    "split_indices",
]
