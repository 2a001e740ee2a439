"""Weak / strong views: the tracked correspondence finds the same scene colour in both views,
flips and crops included, on any grid; views are a function of the generator's seed."""

from __future__ import annotations

import math

import pytest
import torch

from gkd_deploy.errors import ConfigError
from gkd_deploy.instance import ViewAugmentation
from gkd_deploy.models.decoders.mask2former.point_sampling import point_sample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

BATCH, HEIGHT, WIDTH = 6, 60, 80
SIZE = (48, 64)
GEOMETRY_ONLY = {"jitter_probability": 0.0, "grayscale_probability": 0.0, "blur_probability": 0.0}


def smooth_images() -> torch.Tensor:
    """(B, 3, H, W) 0..255, slowly varying and different in every channel and image, not symmetric."""
    ys = (torch.arange(HEIGHT) + 0.5)[:, None] / HEIGHT
    xs = (torch.arange(WIDTH) + 0.5)[None, :] / WIDTH
    channels = []
    for image in range(BATCH):
        channels.append(torch.stack([
            128 + 90 * torch.sin(2.1 * xs + 1.3 * ys + image),
            128 + 90 * torch.cos(1.7 * xs - 2.4 * ys + 0.5 * image),
            40 + 180 * xs * (0.3 + ys),
        ]))
    return torch.stack(channels).float()


def grid_centres(height: int, width: int) -> torch.Tensor:
    """(1, h*w, 2) relative (x, y) of an (h, w) grid's cell centres, row-major."""
    ys = (torch.arange(height) + 0.5) / height
    xs = (torch.arange(width) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).reshape(1, -1, 2)


@pytest.mark.parametrize("grid", [SIZE, (12, 16), (5, 7)])
def test_a_location_has_the_same_colour_in_both_views(grid):
    pair = ViewAugmentation(SIZE, **GEOMETRY_ONLY)(smooth_images(), torch.Generator().manual_seed(1))
    assert pair.weak.images.shape == pair.strong.images.shape == (BATCH, 3, *SIZE)
    points, valid = pair.correspondence(grid)
    assert points.shape == (BATCH, *grid, 2) and valid.shape == (BATCH, *grid)
    weak_colours = point_sample(pair.weak.images, grid_centres(*grid).expand(BATCH, -1, -1))  # (B, 3, h*w)
    strong_colours = point_sample(pair.strong.images, points.flatten(1, 2))
    visible = valid.flatten(1)[:, None].expand(-1, 3, -1)
    assert 0.1 < visible.float().mean() < 0.95  # crops see part of the image
    error = (weak_colours - strong_colours).abs()
    assert error[visible].max() < 2.0  # of 255; near the borders the resize filters see only one side
    weak_points = grid_centres(*grid).reshape(1, *grid, 2)
    inner = (((points > 0.05) & (points < 0.95)).all(-1) & ((weak_points > 0.05) & (weak_points < 0.95)).all(-1))
    inner = inner.flatten(1)[:, None].expand(-1, 3, -1)
    assert error[inner].max() < 0.75  # half a pixel off would already be 1.6 to 1.9 here
    assert error[~visible].mean() > 10.0  # outside the crop they differ


def test_flips_and_crops_vary_over_the_batch():
    pair = ViewAugmentation(SIZE)(smooth_images(), torch.Generator().manual_seed(1))
    flipped = pair.weak.to_original[:, 0, 0] < 0
    assert 0 < flipped.sum() < BATCH
    crop_widths = pair.strong.to_original[:, 0, 0] * SIZE[1]
    crop_heights = pair.strong.to_original[:, 1, 1] * SIZE[0]
    assert len(set(crop_widths.tolist())) > BATCH // 2
    assert (pair.strong.to_original[:, 0, 2] + crop_widths <= WIDTH).all()  # inside the image
    assert (pair.strong.to_original[:, 1, 2] + crop_heights <= HEIGHT).all()


def test_the_seed_decides_the_views_and_photometry_leaves_the_geometry():
    images = smooth_images()
    augment = ViewAugmentation(SIZE)
    first, again = (augment(images, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(first.strong.images, again.strong.images) and torch.equal(first.weak.images, again.weak.images)
    other = augment(images, torch.Generator().manual_seed(6))
    assert not torch.equal(first.strong.to_original, other.strong.to_original)
    plain = ViewAugmentation(SIZE, **GEOMETRY_ONLY)(images, torch.Generator().manual_seed(5))
    assert torch.equal(plain.strong.to_original, first.strong.to_original)
    assert torch.equal(plain.weak.images, first.weak.images)
    changed = (plain.strong.images - first.strong.images).abs().flatten(1).amax(1) > 1.0
    assert changed.any()  # jitter, grayscale or blur hit some images ...
    assert first.strong.images.min() >= 0.0 and first.strong.images.max() <= 255.0  # ... on the 0..255 scale


def test_grayscale_and_blur_alone():
    images = smooth_images()
    gray = ViewAugmentation(SIZE, jitter_probability=0.0, grayscale_probability=1.0, blur_probability=0.0)(
        images, torch.Generator().manual_seed(0)).strong.images
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-4) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-4)
    blurred = ViewAugmentation(SIZE, jitter_probability=0.0, grayscale_probability=0.0, blur_probability=1.0,
                               blur_sigma=(2.0, 2.0))(images, torch.Generator().manual_seed(0)).strong.images
    plain = ViewAugmentation(SIZE, **GEOMETRY_ONLY)(images, torch.Generator().manual_seed(0)).strong.images
    roughness = [(view.diff(dim=-1).abs().mean()).item() for view in (blurred, plain)]
    assert roughness[0] < roughness[1]
    assert math.isclose(blurred.mean().item(), plain.mean().item(), rel_tol=0.02)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="flip_probability"):
        ViewAugmentation(SIZE, flip_probability=1.5)
    with pytest.raises(ConfigError, match="crop_scale"):
        ViewAugmentation(SIZE, crop_scale=(0.0, 1.0))
