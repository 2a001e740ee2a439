"""Seed in, image out: the single entry point that ties layout, rasteriser and styles together.

Random streams are derived from the scene seed with `np.random.default_rng([seed, stream])`,
one stream per purpose, so the layout never depends on the style and a style's look never
depends on the frame.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .checks import check_choice, check_int, check_size
from .instances import instance_id_map
from .layout import sample_layout
from .scene import SceneBuffers, rasterize
from .styles import STYLES, apply_style, sample_style

_STYLE_LOOK, _STYLE_FRAME = 10, 11  # random-stream ids (sky, texture and haze use 1-3)


def render_scene(seed: int, size: tuple[int, int] = (512, 256), style: str = "clear") -> tuple[np.ndarray, np.ndarray]:
    """Render street scene `seed` in `style`.

    size: (width, height). Returns (image (H, W, 3) uint8 RGB, label (H, W) uint8 train ids,
    255 only on the ego car's bonnet). Same arguments, byte-identical output; the label map
    does not depend on the style. Raises ConfigError for a negative seed, a size that is not
    two positive multiples of 8, or an unknown style.
    """
    image, buffers = _render(seed, size, style)
    return image, buffers.label.copy()


def render_scene_instances(seed: int, size: tuple[int, int] = (512, 256), style: str = "clear") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`render_scene` plus the scene's instance ids: (image, label, (H, W) uint16 ids).

    The ids are Cityscapes' `instanceIds` encoding (see `instances.instance_id_map`): label id
    x 1000 + instance index on every pixel of a thing object, the plain label id elsewhere. The
    image and label are byte-identical to `render_scene`'s.
    """
    image, buffers = _render(seed, size, style)
    return image, buffers.label.copy(), instance_id_map(buffers.label, buffers.objects)


def _render(seed: int, size: tuple[int, int], style: str) -> tuple[np.ndarray, SceneBuffers]:
    seed, size, style = _checked(seed, size, style)
    buffers = rasterize(sample_layout(seed), size)
    params = sample_style(style, np.random.default_rng([seed, _STYLE_LOOK]))
    image = apply_style(buffers, params, np.random.default_rng([seed, _STYLE_FRAME]))
    return image, buffers


def render_clip(seed: int, frames: int, size: tuple[int, int] = (512, 256), style: str = "fog", fps: float = 10.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `frames` consecutive (image, label) pairs of one drive through scene `seed`.

    The camera moves forward at the scene's ego speed; parked cars, poles and markings come
    towards it, other traffic and pedestrians move on their own. One weather look for the
    whole clip; rain streaks, flakes and sensor noise change per frame.
    """
    check_int(frames, "frames", 1)
    _checked(seed, size, style)  # fail here, not at the first next()
    return (render_frame(seed, index, size, style, fps) for index in range(frames))


def render_frame(seed: int, index: int, size: tuple[int, int], style: str, fps: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Frame `index` of `render_clip` on its own (for rendering frames in parallel)."""
    seed, size, style = _checked(seed, size, style)
    check_int(index, "index")
    buffers = rasterize(sample_layout(seed), size, t=index / fps)
    params = sample_style(style, np.random.default_rng([seed, _STYLE_LOOK]))
    image = apply_style(buffers, params, np.random.default_rng([seed, _STYLE_FRAME, index]))
    return image, buffers.label.copy()


def _checked(seed: int, size: tuple[int, int], style: str) -> tuple[int, tuple[int, int], str]:
    return check_int(seed, "seed"), check_size(size), check_choice(style, "style", STYLES)
