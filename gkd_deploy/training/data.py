"""Training data: one or more data sets as one index, augmented in the deterministic global-batch order."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset

from gkd_deploy.data.base import SegmentationDataset
from gkd_deploy.data.registry import build_domains, parse_dataset_list
from gkd_deploy.errors import DataError
from gkd_deploy.training.sampling import GlobalBatchSampler


class TrainingSet(Dataset):
    """Several data sets of one class set as one index (the paper's several source domains).

    `items` lists (member, sample index) pairs; `subset` keeps a fixed share of them.
    """

    def __init__(self, members: Sequence[SegmentationDataset], items: Sequence[tuple[int, int]] | None = None) -> None:
        if not members:
            raise DataError("no training data sets given")
        class_sets = {m.class_set.names for m in members}
        if len(class_sets) > 1:
            raise DataError(f"training data sets {', '.join(m.name for m in members)} are labelled with different "
                            "class sets; train on data sets of one class set")
        self.members = list(members)
        self.items = list(items) if items is not None else [(m, i) for m, d in enumerate(members) for i in range(len(d))]

    @property
    def class_set(self):
        return self.members[0].class_set

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        member, sample = self.items[index]
        return self.members[member][sample]

    def with_transform(self, transform: Callable) -> "TrainingSet":
        """A copy whose members apply `transform` (the callers' data sets are left as they were)."""
        members = []
        for member in self.members:
            member = copy.copy(member)
            member.transform = transform
            members.append(member)
        return TrainingSet(members, self.items)

    def subset(self, fraction: float, seed: int) -> "TrainingSet":
        """A fixed share of the samples, the same for a given seed (the labelled share of semi-supervised runs)."""
        if fraction >= 1.0:
            return self
        count = max(1, math.ceil(len(self.items) * fraction))
        chosen = np.sort(np.random.default_rng([seed, 7919]).choice(len(self.items), size=count, replace=False))
        return TrainingSet(self.members, [self.items[i] for i in chosen])


class SeededItems(Dataset):
    """`items[(index, seed)]` is `dataset[index]` augmented with a transform reseeded by `seed`."""

    def __init__(self, dataset: TrainingSet, transform: Any) -> None:
        self.transform = transform
        self.dataset = dataset.with_transform(transform)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        self.transform.reseed(seed)
        return self.dataset[index]


def load_training_set(entries: Sequence[Any] | str, *, labeled: bool) -> TrainingSet:
    """The training split of one or more data sets; `labeled=False` skips reading labels."""
    members: list[SegmentationDataset] = []
    for spec in parse_dataset_list(list(entries) if not isinstance(entries, str) else entries):
        for dataset in build_domains(spec, split="train").values():
            if labeled and not dataset.labeled:
                raise DataError(f"{dataset.name}: the task stage needs labels, and this data set has none")
            if not labeled and dataset.labeled:
                dataset = copy.copy(dataset)
                dataset.labeled = False  # distillation uses the images only: do not decode labels
            members.append(dataset)
    return TrainingSet(members)


def training_loader(dataset: TrainingSet, transform: Any, *, global_batch: int, seed: int, steps: int,
                    start_step: int, rank: int, world_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """Batches of `dataset` augmented by `transform` (a `TaskTransform` or `DistillTransform`)."""
    sampler = GlobalBatchSampler(len(dataset), global_batch, seed=seed, steps=steps, start_step=start_step,
                                 rank=rank, world_size=world_size)
    return DataLoader(SeededItems(dataset, transform), batch_sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=False)
