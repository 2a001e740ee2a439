"""Where frames come from: a video file, an image, a folder or glob of images, a camera, a stream.

`open_source(spec)` reads the user's SOURCE argument and returns a `FrameSource`, an iterator of
`Frame`s (BGR uint8, OpenCV's order) that knows its frame rate, the number of frames its header
promises (None for live sources) and, once exhausted, how many it actually decoded. Bad input
fails at open time with a message that names the file and the likely cause; a video that stops
decoding early (truncated, corrupt) is not an error: the frames that decoded are processed and the
shortfall is reported.
"""

from __future__ import annotations

import glob
from abc import ABC, abstractmethod
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from gkd_deploy.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
DEFAULT_FPS = 30.0
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Frame:
    index: int
    name: str  # stem for output files: the image's stem, or frame_000123 for video
    image: np.ndarray  # (H, W, 3) uint8 BGR


@dataclass
class FrameSource(ABC):
    """Base of the sources; subclasses implement `_frames`. Iterate once."""

    description: str
    kind: str  # video | images | camera | stream
    fps: float = DEFAULT_FPS
    expected: int | None = None  # frames the container or folder promises; None for live sources
    decoded: int = 0
    unreadable: list[str] = field(default_factory=list)  # images that could not be read (folders)
    frame_size: tuple[int, int] | None = None  # (width, height) where the container says; None for images

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")

    @property
    def truncated(self) -> bool:
        """A file source that ended before the frame count its header promised."""
        return self.kind == "video" and self.expected is not None and self.decoded < self.expected

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._frames():
            self.decoded += 1
            yield frame

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """The frames in order; each subclass reads its own kind of input."""

    def close(self) -> None:
        pass


class VideoSource(FrameSource):
    """A video file, camera index or network stream through `cv2.VideoCapture` (FFmpeg backend)."""

    def __init__(self, target: str | int, kind: str, description: str) -> None:
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            raise DataError(_open_failure(target, kind))
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and 0 < fps <= 1000):
            log.warning("%s reports no usable frame rate (%s); writing output at %g fps", description, fps, DEFAULT_FPS)
            fps = DEFAULT_FPS
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else 0
        super().__init__(description=description, kind=kind, fps=float(fps), expected=count if count > 0 else None)
        self.capture = capture
        self.fourcc = _fourcc(capture)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_size = (width, height) if width > 0 and height > 0 else None

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                break
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            yield Frame(index, f"frame_{index:06d}", image)
            index += 1
        if index == 0 and self.kind == "video":
            raise DataError(f"{self.description}: no frame could be decoded (codec {self.fourcc or 'unknown'}); the file "
                            "is empty, corrupt, or uses a codec this OpenCV build cannot decode - re-encode it, e.g. "
                            "ffmpeg -i IN -c:v libx264 OUT.mp4")

    def close(self) -> None:
        self.capture.release()


class ImageSource(FrameSource):
    """One image, or a sorted list of images from a folder or glob. An unreadable image in a list
    is skipped and reported; a single unreadable image is an error."""

    def __init__(self, paths: list[Path], description: str, fps: float) -> None:
        super().__init__(description=description, kind="images", fps=fps, expected=len(paths))
        self.paths = paths

    def _frames(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            image = read_image(path, strict=len(self.paths) == 1)
            if image is None:
                self.unreadable.append(str(path))
                log.warning("skipped %s: not a readable image", path)
                continue
            yield Frame(index, path.stem, image)
            index += 1


def read_image(path: Path, strict: bool = True) -> np.ndarray | None:
    """An image file as (H, W, 3) uint8 BGR; None (or DataError if `strict`) when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None and strict:
        raise DataError(f"{path} is not a readable image (empty, corrupt, or a format OpenCV cannot decode)")
    return image


def open_source(spec: str | Path, fps: float | None = None) -> FrameSource:
    """A camera index ("0"), a stream URL (rtsp://, http://, ...), a video file, an image, a folder
    of images or a glob ("frames/*.png"). `fps` sets the output frame rate of image sources."""
    text = str(spec)
    image_fps = fps or 10.0
    if text.isdigit():
        return VideoSource(int(text), "camera", f"camera {text}")
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme in STREAM_SCHEMES:
        return VideoSource(text, "stream", text)
    path = Path(text).expanduser()
    if path.is_dir():
        images = _image_files(sorted(path.iterdir()))
        if not images:
            raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(images, f"{path}/ ({len(images)} images)", image_fps)
    if not path.exists() and _GLOB_CHARS.search(text):
        images = _image_files(sorted(Path(p) for p in glob.glob(text, recursive=True)))
        if not images:
            raise DataError(f"no images match {text!r}")
        return ImageSource(images, f"{text} ({len(images)} images)", image_fps)
    if not path.exists():
        raise DataError(f"{path} not found: give a video file, an image, a folder or glob of images, a camera index "
                        "or a stream URL (rtsp://...)")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], str(path), image_fps)
    source = VideoSource(str(path), "video", str(path))
    if fps:
        source.fps = fps
    return source


def _image_files(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _fourcc(capture: cv2.VideoCapture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    if code <= 0:
        return ""
    text = code.to_bytes(4, "little").decode("ascii", errors="replace")
    return text if text.isprintable() else ""


def _open_failure(target: str | int, kind: str) -> str:
    if kind == "camera":
        return f"cannot open camera {target}: no such device, or it is in use (list them with `v4l2-ctl --list-devices`)"
    if kind == "stream":
        return f"cannot open the stream {target}: check the URL, the network and that the server is up"
    path = Path(str(target))
    if path.stat().st_size == 0:
        return f"{path} is empty (0 bytes)"
    return (f"OpenCV cannot open {path} as a video: the file is truncated or corrupt (an MP4 whose recording was "
            "interrupted has no index), not a video, or uses a codec this OpenCV build cannot read")
