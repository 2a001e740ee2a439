"""A deterministic point sampler for Mask2Former's point costs and losses."""

from __future__ import annotations

import torch

from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler


class PixelCentres(PointSampler):
    """Deterministic points: every pixel centre of an (h, w) grid, for costs and losses alike.

    With them the point costs and losses become plain per-pixel means over a (h, w) prediction,
    which a reference can compute without any sampling.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__(height * width, 1.0, 0.0)
        ys = (torch.arange(height) + 0.5) / height
        xs = (torch.arange(width) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        self.centres = torch.stack((grid_x, grid_y), dim=-1).reshape(1, -1, 2)

    def uniform(self, count, device):
        return self.centres.expand(count, -1, -1).to(device)

    def importance(self, logits):
        return self.centres.expand(logits.shape[0], -1, -1).to(logits.device)


def fit_losses(forward, criterion, instances, parameters, steps: int, lr: float) -> list[float]:
    """`steps` AdamW steps of `criterion(forward(), instances)`: the loss of each step."""
    import torch

    optimizer = torch.optim.AdamW(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        loss = criterion(forward(), instances)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
