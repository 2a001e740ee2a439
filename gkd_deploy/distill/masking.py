"""Random patch masks for the masked student pass, and the per-step randomness they come from.

As in the GKD authors' code (`--mask_probability 0.5 --mask_ratio 0.5 --mask_first_n`), exactly
int(mask_prob x B) images of each batch are masked, the FIRST ones (the data order is already a
random permutation), each with int(mask_ratio x N) patches drawn uniformly without replacement.

Masks are drawn for the *global* batch from a generator seeded by the training step, then each
process takes its rows (`BatchRandom.take`): the same step gives the same masks on any number of
processes, after a resume too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchRandom:
    """The randomness of one training step, shared by every process.

    `generator` is seeded by (seed, stage, step) alone; tensors drawn from it cover the global
    batch, and `take` keeps this process's rows `rows` of it.
    """

    generator: torch.Generator
    global_batch: int
    rows: slice

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        """(global_batch, ...) -> this process's (local_batch, ...) rows."""
        return tensor[self.rows]

    @classmethod
    def single(cls, batch_size: int, seed: int = 0) -> "BatchRandom":
        """One process holding the whole batch (tests, benchmarks)."""
        return cls(torch.Generator().manual_seed(seed), batch_size, slice(0, batch_size))


def first_images_mask(batch_size: int, num_patches: int, mask_prob: float, mask_ratio: float,
                      generator: torch.Generator) -> torch.Tensor:
    """(batch_size, num_patches) bool: rows 0 .. int(mask_prob * batch_size) - 1 each have
    int(mask_ratio * num_patches) True patches, uniformly at random; the other rows none."""
    masked_images = int(batch_size * mask_prob)
    count = int(num_patches * mask_ratio)
    order = torch.rand(batch_size, num_patches, generator=generator).argsort(dim=1)
    chosen = torch.zeros(batch_size, num_patches, dtype=torch.bool)
    chosen.scatter_(1, order[:, :count], True)
    chosen[masked_images:] = False
    return chosen
