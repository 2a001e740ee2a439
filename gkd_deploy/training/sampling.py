"""Deterministic data order: which samples each process sees at each step.

The order is a pure function of (seed, step): epoch e is a permutation drawn from seed + e, cut
into global batches; process r of w takes rows r*b .. (r+1)*b of each global batch (b = global / w).
So a resumed run continues with exactly the batches it would have seen, and w processes together
see the same global batch as one process. Every item also carries its own seed, which the
augmentation uses, for the same reason.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from gkd_deploy.errors import ConfigError


def item_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this process's part of every global batch, from `start_step` on, for `steps` steps.

    Items are (dataset index, augmentation seed). Epochs drop their last incomplete batch; a data
    set smaller than one global batch is sampled with replacement of whole epochs (it repeats).
    """

    def __init__(self, dataset_size: int, global_batch: int, *, seed: int, steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ConfigError(f"the batch size {global_batch} is global and must divide evenly over {world_size} "
                              f"processes; choose a multiple of {world_size}")
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.seed, self.steps, self.start_step = seed, steps, start_step
        self.rank = rank
        self._repeats = -(-global_batch // dataset_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def _epoch_positions(self, epoch: int) -> np.ndarray:
        """One epoch's order, at least one global batch long (small sets are repeated)."""
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = np.concatenate([rng.permutation(self.dataset_size) for _ in range(self._repeats)])
            self._cached = (epoch, order)
        return self._cached[1]

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        per_epoch = self._repeats * self.dataset_size // self.global_batch
        epoch, batch_in_epoch = divmod(step, per_epoch)
        order = self._epoch_positions(epoch)
        start = batch_in_epoch * self.global_batch + self.rank * self.local_batch
        return [(int(order[p]), item_seed(self.seed, epoch, p)) for p in range(start, start + self.local_batch)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            yield self.batch_at(step)
