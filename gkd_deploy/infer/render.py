"""What a user sees: colour masks from the model's palette, blended over the frame or beside it."""

from __future__ import annotations

import cv2
import numpy as np

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.errors import ConfigError


# The legend lists the classes covering at least this share of the frame, at most LEGEND_ROWS of them.
LEGEND_MIN_SHARE = 0.01
LEGEND_ROWS = 8
# Below this height (pixels) text would be unreadable: no legend and no caption are drawn.
MIN_TEXT_HEIGHT = 96
FONT = cv2.FONT_HERSHEY_SIMPLEX


class PictureLayout:
    """What every renderer's output picture shares: the colours' weight in the overlay (`alpha`),
    the frame beside the overlay or not, and the caption over the whole."""

    def __init__(self, alpha: float = 0.5, side_by_side: bool = False, caption: str | None = None) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--alpha must be within 0..1, got {alpha}")
        self.alpha = alpha
        self.side_by_side = side_by_side
        self.caption = caption

    def compose(self, frame: np.ndarray, overlay: np.ndarray) -> np.ndarray:
        """The overlay, or the frame and the overlay side by side (twice as wide), with the caption."""
        picture = np.concatenate([frame, overlay], axis=1) if self.side_by_side else overlay
        if self.caption:
            draw_text_box(picture, [self.caption], corner="top")
        return picture

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        return (2 * width if self.side_by_side else width), height


class Renderer(PictureLayout):
    """Turns (frame, labels) into the pictures `gkd infer` writes; colours come from the model's metadata.

    `legend`: a key in the overlay's lower left corner naming the classes seen in that frame (largest
    first, in their colours); `caption`: one line over the picture's top left (e.g. the model and
    precision). Both are drawn only on pictures at least `MIN_TEXT_HEIGHT` pixels high; colour masks
    and label maps never carry them."""

    def __init__(self, class_set: ClassSet, alpha: float = 0.5, side_by_side: bool = False, legend: bool = False,
                 caption: str | None = None) -> None:
        super().__init__(alpha, side_by_side, caption)
        self.legend = legend
        self.names = class_set.names
        # A BGR lookup table over all 256 label values; ignored and unknown ids are black.
        self.lut = np.zeros((256, 3), dtype=np.uint8)
        self.lut[: class_set.num_classes] = np.asarray(class_set.palette, dtype=np.uint8)[:, ::-1]

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) BGR colour mask."""
        return self.lut[labels]

    def overlay(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The frame with its colour mask blended in (alpha = mask weight)."""
        return cv2.addWeighted(frame, 1.0 - self.alpha, self.mask(labels), self.alpha, 0.0)

    def view(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The output picture: the overlay, or the frame and the overlay side by side (twice as wide),
        with the legend on the overlay and the caption over the whole."""
        overlay = self.overlay(frame, labels)
        if self.legend:
            self.draw_legend(overlay, self.legend_classes(labels))
        return self.compose(frame, overlay)

    def legend_classes(self, labels: np.ndarray) -> list[int]:
        """Train ids covering at least LEGEND_MIN_SHARE of the frame, largest first, at most LEGEND_ROWS."""
        counts = np.bincount(labels.reshape(-1), minlength=256)[: len(self.names)]
        seen = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] >= LEGEND_MIN_SHARE * labels.size]
        return seen[:LEGEND_ROWS]

    def draw_legend(self, picture: np.ndarray, classes: list[int]) -> None:
        if classes:
            draw_text_box(picture, [self.names[i] for i in classes], corner="bottom",
                          swatches=[tuple(int(c) for c in self.lut[i]) for i in classes])


def text_scale(height: int) -> float:
    """Font scale for a picture of this height: readable from 96 px (CIF) to 2160 px (4K)."""
    return float(np.clip(height / 900.0, 0.35, 1.6))


def draw_text_box(picture: np.ndarray, lines: list[str], corner: str = "top",
                  swatches: list[tuple[int, int, int]] | None = None) -> None:
    """Writes `lines` in white on a darkened box in the top or bottom left corner of `picture` (in
    place), each line after its colour swatch when `swatches` are given. Nothing on pictures lower
    than MIN_TEXT_HEIGHT; lines that do not fit in the height are left out."""
    height, width = picture.shape[:2]
    if height < MIN_TEXT_HEIGHT or not lines:
        return
    scale = text_scale(height)
    thickness = max(1, round(scale * 1.5))
    (_, text_h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
    row, pad = text_h + baseline + max(2, text_h // 3), max(3, text_h // 2)
    lines = lines[: max(1, (height - 2 * pad) // row)]
    indent = (text_h + pad) if swatches else 0
    box_w = min(width, 2 * pad + indent + max(cv2.getTextSize(line, FONT, scale, thickness)[0][0] for line in lines))
    box_h = min(height, 2 * pad + row * len(lines))
    top = 0 if corner == "top" else height - box_h
    region = picture[top:top + box_h, :box_w]
    region[:] = (region.astype(np.float32) * 0.35).astype(np.uint8)  # darken, keep a hint of the scene
    for i, line in enumerate(lines):
        y = top + pad + i * row
        if swatches:
            cv2.rectangle(picture, (pad, y + 1), (pad + text_h, y + text_h + 1), swatches[i], thickness=-1)
        cv2.putText(picture, line, (pad + indent, y + text_h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
