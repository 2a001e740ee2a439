"""Random patch masks for the masked student pass.

Masks are drawn for the *global* batch from a generator seeded by the training step, then each
process takes its rows: the same step gives the same masks on any number of processes, after a
resume too.
"""

from __future__ import annotations

import torch


def random_patch_mask(
    batch_size: int, num_patches: int, mask_prob: float, mask_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """(batch_size, num_patches) bool: each image is masked with probability `mask_prob`; a masked
    image has round(mask_ratio * num_patches) patches, drawn uniformly without replacement, set."""
    masked_images = torch.rand(batch_size, generator=generator) < mask_prob
    count = int(round(mask_ratio * num_patches))
    order = torch.rand(batch_size, num_patches, generator=generator).argsort(dim=1)
    chosen = torch.zeros(batch_size, num_patches, dtype=torch.bool)
    chosen.scatter_(1, order[:, :count], True)
    return chosen & masked_images[:, None]
