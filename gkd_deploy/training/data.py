"""Training data loaders: augmented fixed-size crops in the deterministic global-batch order."""

from __future__ import annotations

import copy
from typing import Any

from torch.utils.data import DataLoader, Dataset

from gkd_deploy.data.base import SegmentationDataset
from gkd_deploy.data.registry import build_domains, parse_dataset_arg
from gkd_deploy.data.transforms import TrainTransform, train_transform
from gkd_deploy.errors import DataError
from gkd_deploy.training.sampling import GlobalBatchSampler


class SeededItems(Dataset):
    """`items[(index, seed)]` is `dataset[index]` augmented with a transform seeded by `seed`."""

    def __init__(self, dataset: SegmentationDataset, transform: TrainTransform) -> None:
        self.dataset = copy.copy(dataset)  # our own transform, leaving the caller's data set as it was
        self.dataset.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        self.dataset.transform.reseed(seed)
        return self.dataset[index]


def load_training_set(text: str, *, labeled: bool) -> SegmentationDataset:
    """The training split of one NAME=PATH data set; `labeled=False` skips reading labels."""
    domains = build_domains(parse_dataset_arg(text), split="train")
    if len(domains) != 1:
        raise DataError(f"{text}: a training set must be one domain, but it has {len(domains)} "
                        f"({', '.join(domains)}); name one folder")
    dataset = next(iter(domains.values()))
    if not labeled and dataset.labeled:
        dataset = copy.copy(dataset)
        dataset.labeled = False  # stage 2 uses the source images only: do not decode labels
    if labeled and not dataset.labeled:
        raise DataError(f"{text}: the task stage needs labels, and this data set has none")
    return dataset


def training_loader(dataset: SegmentationDataset, *, crop_size: int, scale_range: tuple[float, float],
                    global_batch: int, seed: int, steps: int, start_step: int, rank: int, world_size: int,
                    workers: int, pin_memory: bool) -> DataLoader:
    sampler = GlobalBatchSampler(len(dataset), global_batch, seed=seed, steps=steps, start_step=start_step,
                                 rank=rank, world_size=world_size)
    transform = train_transform(crop_size=(crop_size, crop_size), scale_range=scale_range)
    return DataLoader(SeededItems(dataset, transform), batch_sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=False)
