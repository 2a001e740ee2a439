"""Labelled / unlabelled splits of an instance data set by label fraction (semi-supervised runs).

The paper labels 5 %, 10 % (the default) or 30 % of the training images; the rest is the
unlabelled pool, of which only the images are read. Splits are nested: for one seed the 5 % set is
a subset of the 10 % set, which is a subset of the 30 % set, so results across fractions compare
like with like. One seeded permutation of the images is drawn and the labelled set is its first
ceil(fraction x N) entries (at least one), which is what makes any two fractions nested.

The semantic stage-3 subset (`TrainingSet.subset`) draws its share with `Generator.choice`, whose
picks for two sizes need not nest; it is left as it is so that existing runs keep their subsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
from torch.utils.data import Dataset

from gkd_deploy.data.instances.base import InstanceDataset
from gkd_deploy.data.instances.sample import InstanceSample
from gkd_deploy.errors import ConfigError, DataError

LABEL_FRACTIONS = (0.05, 0.10, 0.30)
DEFAULT_LABEL_FRACTION = 0.10
_SPLIT_STREAM = 7919  # the random stream id of the semantic label-fraction subset as well


@dataclass(frozen=True)
class LabelSplit:
    """Sorted int64 image indices: `labelled` and the rest, `unlabelled` (disjoint, together all)."""

    fraction: float
    seed: int
    labelled: np.ndarray
    unlabelled: np.ndarray


def check_label_fraction(fraction: float) -> float:
    """`fraction` as a float if it lies in (0, 1), else a `ConfigError` that says what to give."""
    if not isinstance(fraction, Real) or isinstance(fraction, bool) or not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"label fraction must be a number between 0 and 1 (exclusive), e.g. "
                          f"{DEFAULT_LABEL_FRACTION} for 10 % of the images labelled; got {fraction!r}")
    return float(fraction)


def split_indices(count: int, fraction: float = DEFAULT_LABEL_FRACTION, seed: int = 0) -> LabelSplit:
    """Split image indices 0..count-1 into a labelled share and the unlabelled rest.

    Deterministic in (count, seed) and nested across fractions. Raises `ConfigError` for a
    fraction outside (0, 1) and `DataError` when no image, or no unlabelled image, is left.
    """
    fraction = check_label_fraction(fraction)
    if count <= 0:
        raise DataError("no images to split into labelled and unlabelled ones; check the data set folder")
    labelled = max(1, math.ceil(count * fraction))
    if labelled >= count:
        raise DataError(f"the unlabelled pool is empty: a label fraction of {fraction:g} of {count} image(s) labels "
                        f"{labelled}; use a data set with more images or a smaller label fraction")
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(count)
    return LabelSplit(fraction, seed, np.sort(order[:labelled]), np.sort(order[labelled:]))


class InstanceSubset(Dataset):
    """Some images of an instance data set: with their targets (`labelled`) or as images only."""

    def __init__(self, dataset: InstanceDataset, indices: np.ndarray, *, labelled: bool) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, np.int64)
        self.labelled = labelled

    @property
    def name(self) -> str:
        return self.dataset.name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> InstanceSample:
        source = int(self.indices[index])
        return self.dataset[source] if self.labelled else self.dataset.image_only(source)

    def __repr__(self) -> str:
        kind = "labelled" if self.labelled else "unlabelled"
        return f"InstanceSubset({self.dataset.name!r}, {len(self)} {kind} of {len(self.dataset)})"


def split_dataset(dataset: InstanceDataset, fraction: float = DEFAULT_LABEL_FRACTION,
                  seed: int = 0) -> tuple[InstanceSubset, InstanceSubset]:
    """(labelled set, unlabelled pool) of `dataset` as `split_indices` splits it."""
    split = split_indices(len(dataset), fraction, seed)
    return (InstanceSubset(dataset, split.labelled, labelled=True),
            InstanceSubset(dataset, split.unlabelled, labelled=False))
