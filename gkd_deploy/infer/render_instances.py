"""What a user sees of an instance model: every instance in its own colour, blended over the frame
and outlined, with a tag "class score" (e.g. "car 0.87") at the top-left corner of its box.

Colours go by instance index (best-scoring first, `instances.FrameInstances`), not by class: two
cars side by side must be told apart. They walk the hue circle in steps of the golden ratio, so
that instances next in the index are far apart in hue, and depend on nothing else: the same index
has the same colour in every frame and every run. Where masks overlap the better-scoring instance
is drawn on top. Tags, like the caption, are drawn only on pictures at least `MIN_TEXT_HEIGHT`
pixels high.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.infer.instances import FrameInstances
from gkd_deploy.infer.render import FONT, MIN_TEXT_HEIGHT, PictureLayout, text_scale

GOLDEN_RATIO_CONJUGATE = 0.6180339887498949  # the hue step between consecutive instances
SATURATION, VALUE = 0.85, 0.95
TAG_SCALE = 0.6  # of the caption's text scale: tags are many and should not hide their instances
MIN_TAG_SCALE = 0.35  # the smallest font scale that stays legible
DARK_TEXT_ABOVE = 150  # tag colours brighter than this (luma 0-255) get black text, the others white


def instance_colour(index: int) -> tuple[int, int, int]:
    """The BGR colour of instance `index`."""
    red, green, blue = colorsys.hsv_to_rgb((index * GOLDEN_RATIO_CONJUGATE) % 1.0, SATURATION, VALUE)
    return round(blue * 255), round(green * 255), round(red * 255)


def outline_thickness(height: int) -> int:
    """Outline width in pixels for a picture of this height: 1 below 540 p, 2 at 720 p, 3 at 1080 p."""
    return max(1, round(height / 360))


class InstanceRenderer(PictureLayout):
    """Turns (frame, `FrameInstances`) into the pictures `gkd infer` writes, as `render.Renderer`
    does for label maps: `view` (the annotated picture), `mask` (the instances' colours on black)."""

    def __init__(self, class_set: ClassSet, alpha: float = 0.5, side_by_side: bool = False,
                 caption: str | None = None) -> None:
        super().__init__(alpha, side_by_side, caption)
        self.names = class_set.names

    def mask(self, instances: FrameInstances) -> np.ndarray:
        """(H, W, 3) BGR: each instance's pixels in its colour, the best-scoring on top; black elsewhere."""
        height, width = instances.masks.shape[1:]
        picture = np.zeros((height, width, 3), np.uint8)
        for index in reversed(range(len(instances))):
            picture[instances.masks[index]] = instance_colour(index)
        return picture

    def overlay(self, frame: np.ndarray, instances: FrameInstances) -> np.ndarray:
        """The frame with every instance blended in (alpha = colour weight) and outlined in its colour;
        pixels of no instance are the frame's own."""
        covered = instances.masks.any(axis=0)[..., None]
        blended = cv2.addWeighted(frame, 1.0 - self.alpha, self.mask(instances), self.alpha, 0.0)
        picture = np.where(covered, blended, frame)
        thickness = outline_thickness(frame.shape[0])
        for index in reversed(range(len(instances))):
            contours, _ = cv2.findContours(instances.masks[index].astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(picture, contours, -1, instance_colour(index), thickness, cv2.LINE_8)
        return picture

    def view(self, frame: np.ndarray, instances: FrameInstances) -> np.ndarray:
        """The output picture: the overlay with its tags, or the frame and that side by side (twice as
        wide), with the caption over the whole."""
        overlay = self.overlay(frame, instances)
        self.draw_tags(overlay, instances)
        return self.compose(frame, overlay)

    def tag(self, instances: FrameInstances, index: int) -> str:
        """The text drawn on instance `index`: its class name and score."""
        return f"{self.names[int(instances.classes[index])]} {float(instances.scores[index]):.2f}"

    def draw_tags(self, picture: np.ndarray, instances: FrameInstances) -> None:
        """Each instance's tag at its box's top-left corner (in place), the best-scoring drawn last."""
        if picture.shape[0] < MIN_TEXT_HEIGHT:
            return
        boxes = instances.boxes()
        for index in reversed(range(len(instances))):
            draw_tag(picture, self.tag(instances, index), (int(boxes[index][0]), int(boxes[index][1])),
                     instance_colour(index))


def draw_tag(picture: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """`text` on a box of `colour` whose lower left touches `corner` (x, y) from above, or, with no
    room above, hangs below it; kept inside the picture (in place)."""
    height, width = picture.shape[:2]
    scale = max(MIN_TAG_SCALE, TAG_SCALE * text_scale(height))
    thickness = max(1, round(scale * 1.5))
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, text_height // 4)
    box_width, box_height = text_width + 2 * pad, text_height + baseline + 2 * pad
    x, y = corner
    top = y - box_height if y - box_height >= 0 else min(y, max(0, height - box_height))
    left = min(max(0, x), max(0, width - box_width))
    cv2.rectangle(picture, (left, top), (left + box_width - 1, top + box_height - 1), colour, thickness=-1)
    blue, green, red = colour
    ink = (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > DARK_TEXT_ABOVE else (255, 255, 255)
    cv2.putText(picture, text, (left + pad, top + pad + text_height), FONT, scale, ink, thickness, cv2.LINE_AA)
