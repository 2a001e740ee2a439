"""Weak and strong views of an image batch with tracked pixel correspondence (for L_pxl).

weak = random horizontal flip + resize to `size`;
strong = random resized crop to `size` + colour jitter + grayscale + Gaussian blur.
Each view keeps the affine map from its pixel coordinates to the original image's, continuous
coordinates with (0, 0) the top-left corner of the first pixel and (W, H) the bottom-right corner
of the last (the `align_corners=False` convention of `F.interpolate` and `point_sample`). A
location of the weak view is then found in the strong view by composing one map with the inverse
of the other (`ViewPair.correspondence`); the weak view always sees the whole image, so a
location is visible in both exactly when it falls inside the strong view's crop.

Everything random is drawn from one CPU `torch.Generator`, the geometry before the photometric
changes and every draw made whatever the probabilities, so the same seed gives the same crops with
the photometric changes on or off. The pixel operations are torchvision's.

Our choices (not given by the paper; SimCLR's / UniMatch's usual values): flip p = 0.5; crop
area 0.25-1 of the image and aspect 3/4-4/3 times the output's, a crop that would not fit clamped
to the image (torchvision retries instead); jitter with p = 0.8, brightness / contrast /
saturation factors in [0.6, 1.4] and hue shift in [-0.1, 0.1], applied in that fixed order;
grayscale p = 0.2; blur p = 0.5 with sigma in [0.1, 2.0] and a kernel of 2 * ceil(3 sigma) + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from gkd_deploy.errors import ConfigError


@dataclass(frozen=True)
class View:
    """images (B, 3, H, W) float RGB 0..255; to_original (B, 2, 3) float64: [x, y] of the original
    image = to_original @ [x, y, 1] of the view, in pixel-corner coordinates."""

    images: torch.Tensor
    to_original: torch.Tensor


def _grid_centres(size: tuple[int, int], view_size: tuple[int, int]) -> torch.Tensor:
    """Centres of an (h, w) grid laid over a view of view_size (H, W) -> (h, w, 3) homogeneous view coordinates."""
    (h, w), (height, width) = size, view_size
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * (height / h)
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * (width / w)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y, torch.ones_like(grid_x)), dim=-1)


def _inverse(affine: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine maps -> their inverses (B, 2, 3)."""
    linear_inverse = torch.linalg.inv(affine[:, :, :2])
    return torch.cat((linear_inverse, -linear_inverse @ affine[:, :, 2:]), dim=2)


@dataclass(frozen=True)
class ViewPair:
    """The two views of one batch, made by `ViewAugmentation`."""

    weak: View
    strong: View

    def correspondence(self, grid_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """For the cells of an (h, w) grid over the weak view (its embedding grid): where each cell's
        centre lies in the strong view, and whether it lies inside it.

        Returns:
            points (B, h, w, 2) float32 (x, y) relative to the strong view, in [0, 1] where visible
            (the coordinates of `point_sample`, for any grid over the strong view); valid (B, h, w)
            bool, True where the location is visible in both views.
        """
        centres = _grid_centres(grid_size, tuple(self.weak.images.shape[2:]))
        original = torch.einsum("bij,hwj->bhwi", self.weak.to_original, centres)
        to_strong = _inverse(self.strong.to_original)
        strong = torch.einsum("bij,bhwj->bhwi", to_strong[:, :, :2], original) + to_strong[:, None, None, :, 2]
        height, width = self.strong.images.shape[2:]
        points = strong / torch.tensor([width, height], dtype=torch.float64)
        valid = ((points >= 0.0) & (points <= 1.0)).all(-1)
        device = self.weak.images.device
        return points.float().to(device), valid.to(device)


@dataclass(frozen=True)
class ViewAugmentation:
    """The weak / strong view pair of a batch; `size` (H, W) is both views' output size."""

    size: tuple[int, int]
    flip_probability: float = 0.5
    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        probabilities = ("flip_probability", "jitter_probability", "grayscale_probability", "blur_probability")
        wrong = [name for name in probabilities if not 0.0 <= getattr(self, name) <= 1.0]
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            wrong.append("crop_scale (0 < low <= high <= 1)")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1] or not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            wrong.append("crop_ratio / blur_sigma (0 < low <= high)")
        if not 0.0 <= self.hue <= 0.5 or min(self.brightness, self.contrast, self.saturation) < 0:
            wrong.append("brightness / contrast / saturation (>= 0) / hue (0 to 0.5)")
        if len(self.size) != 2 or min(self.size) < 1:
            wrong.append("size (H, W)")
        if wrong:
            raise ConfigError(f"view augmentation: bad {', '.join(wrong)}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> ViewPair:
        """images (B, 3, H, W) float RGB 0..255 -> the two views, each (B, 3, *size)."""
        batch, _, height, width = images.shape
        flips = torch.rand(batch, generator=generator) < self.flip_probability
        crops = self._crops(batch, height, width, generator)
        photometric = torch.rand(batch, 8, generator=generator)  # drawn whether used or not
        weak = self._weak(images, flips)
        strong = self._strong_geometry(images, crops)
        return ViewPair(weak, View(self._photometric(strong.images, photometric), strong.to_original))

    def _crops(self, batch: int, height: int, width: int, generator: torch.Generator) -> list[tuple[int, ...]]:
        """(top, left, crop height, crop width) per image."""
        draws = torch.rand(batch, 4, generator=generator, dtype=torch.float64).tolist()
        low, high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        output_aspect = self.size[1] / self.size[0]
        crops = []
        for area_draw, ratio_draw, top_draw, left_draw in draws:
            area = height * width * (self.crop_scale[0] + area_draw * (self.crop_scale[1] - self.crop_scale[0]))
            aspect = output_aspect * math.exp(low + ratio_draw * (high - low))  # width / height
            crop_width = min(width, max(1, round(math.sqrt(area * aspect))))
            crop_height = min(height, max(1, round(math.sqrt(area / aspect))))
            top = min(int(top_draw * (height - crop_height + 1)), height - crop_height)
            left = min(int(left_draw * (width - crop_width + 1)), width - crop_width)
            crops.append((top, left, crop_height, crop_width))
        return crops

    def _weak(self, images: torch.Tensor, flips: torch.Tensor) -> View:
        height, width = images.shape[2:]
        flipped = torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)
        resized = TF.resize(flipped, list(self.size), antialias=True)
        scale_x, scale_y = width / self.size[1], height / self.size[0]
        to_original = torch.zeros(images.shape[0], 2, 3, dtype=torch.float64)
        flipped_rows = flips.to(torch.float64)
        to_original[:, 0, 0] = (1.0 - 2.0 * flipped_rows) * scale_x  # x -> W - x when flipped
        to_original[:, 0, 2] = flipped_rows * width
        to_original[:, 1, 1] = scale_y
        return View(resized, to_original)

    def _strong_geometry(self, images: torch.Tensor, crops: list[tuple[int, ...]]) -> View:
        views = [TF.resized_crop(image, top, left, crop_height, crop_width, list(self.size), antialias=True)
                 for image, (top, left, crop_height, crop_width) in zip(images, crops)]
        to_original = torch.tensor([[[crop_width / self.size[1], 0.0, left], [0.0, crop_height / self.size[0], top]]
                                    for top, left, crop_height, crop_width in crops], dtype=torch.float64)
        return View(torch.stack(views), to_original.reshape(-1, 2, 3))

    def _photometric(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Colour jitter, grayscale, blur per image, from 8 uniform draws each."""
        out = []
        for image, (jitter, bright, contrast, saturation, hue, gray, blur, sigma) in zip(images / 255.0,
                                                                                        draws.tolist()):
            if jitter < self.jitter_probability:
                image = TF.adjust_brightness(image, 1.0 + self.brightness * (2.0 * bright - 1.0))
                image = TF.adjust_contrast(image, 1.0 + self.contrast * (2.0 * contrast - 1.0))
                image = TF.adjust_saturation(image, 1.0 + self.saturation * (2.0 * saturation - 1.0))
                image = TF.adjust_hue(image, self.hue * (2.0 * hue - 1.0))
            if gray < self.grayscale_probability:
                image = TF.rgb_to_grayscale(image, num_output_channels=3)
            if blur < self.blur_probability:
                sigma = self.blur_sigma[0] + sigma * (self.blur_sigma[1] - self.blur_sigma[0])
                limit = min(image.shape[1:])  # reflect padding needs kernel // 2 < the image's sides
                kernel = min(2 * math.ceil(3.0 * sigma) + 1, limit if limit % 2 else limit - 1)
                image = TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
            out.append(image)
        return torch.stack(out) * 255.0
