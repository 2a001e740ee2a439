"""Where results go: an annotated video, per-frame images, colour masks, raw label maps, a window.

Each sink gets (frame, prediction, view) per frame: the prediction is the segmenter's output for the
frame, a label map or an instance model's `FrameInstances` (which `InstanceLabelSink` writes as
Cityscapes instance ids and a JSON of the instances); the view is the rendered picture.

The video is written to a hidden partial file beside its destination and moved into place when it
is closed, so the output path only ever holds a finished, playable file: after a truncated input
or Ctrl-C it holds the frames processed so far; with no frame processed no file is left at all.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.fileio import write_json
from gkd_deploy.infer.instances import FrameInstances, instance_id_map, instance_label_ids, instance_records
from gkd_deploy.infer.sources import Frame

log = logging.getLogger(__name__)

# Container suffix -> FourCC that opencv-python's FFmpeg encodes without extra libraries.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class Sink(Protocol):
    def write(self, frame: Frame, prediction: Any, view: np.ndarray) -> None: ...

    def close(self) -> list[Path]:
        """Finish writing; the paths of the files (or folders) that now hold output."""
        ...


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_CODECS


class VideoSink:
    """An annotated video at the source's frame rate; frame size is fixed by the first frame."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        codec = VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise ConfigError(f"cannot write video to {self.path}: use one of {', '.join(VIDEO_CODECS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.codec = codec
        self.fps = fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial-{uuid.uuid4().hex[:8]}{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: Frame, prediction: Any, view: np.ndarray) -> None:
        height, width = view.shape[:2]
        if self.writer is None:
            self.size = (width, height)
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*self.codec), self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise DataError(f"OpenCV cannot write {self.codec} video to {self.path}; check the folder is writable, "
                                "or choose another container (.mp4 or .avi)")
        elif (width, height) != self.size:
            # Video frames share one size; images of mixed sizes are fitted to the first one.
            view = cv2.resize(view, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(np.ascontiguousarray(view))
        self.frames += 1

    def close(self) -> list[Path]:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.frames == 0:
            self.partial.unlink(missing_ok=True)
            return []
        os.replace(self.partial, self.path)
        return [self.path]


class ImageFolderSink:
    """One PNG per frame in `folder`, named after the frame; `kind` picks what is written:
    `view` (the annotated picture), `mask` (colour mask, from the renderer) or `labels` (raw train
    ids, 8-bit)."""

    def __init__(self, folder: str | Path, kind: str, renderer=None) -> None:
        if kind not in ("view", "mask", "labels"):
            raise ValueError(f"unknown image kind {kind!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.renderer = renderer
        self.frames = 0

    def write(self, frame: Frame, prediction: Any, view: np.ndarray) -> None:
        _write_picture(self.folder / f"{frame.name}.png", self.kind, self.renderer, prediction, view)
        self.frames += 1

    def close(self) -> list[Path]:
        return [self.folder] if self.frames else []


def _write_picture(path: Path, kind: str, renderer, prediction: Any, view: np.ndarray) -> None:
    """The `kind` picture of one frame at `path`."""
    picture = {"view": lambda: view, "labels": lambda: prediction, "mask": lambda: renderer.mask(prediction)}[kind]()
    _write_png(path, picture)


def _write_png(path: Path, picture: np.ndarray) -> None:
    """`picture` (8-bit BGR or grey, or 16-bit grey) at `path`, written to a hidden partial file and
    moved into place."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    if not cv2.imwrite(str(partial), picture):
        raise DataError(f"cannot write {path}; check the folder is writable and has space")
    os.replace(partial, path)


class InstanceLabelSink:
    """An instance model's `--labels`: per frame, in `folder`, `<frame>.png`, the Cityscapes instance
    ids (16-bit, label id x 1000 + instance index, 0 where no instance is: `instances.instance_id_map`)
    and `<frame>.json`, its instances (index, id, class, score, box, area). ConfigError when the
    model has more classes than the ids hold."""

    def __init__(self, folder: str | Path, class_set: ClassSet) -> None:
        self.label_ids = instance_label_ids(class_set)
        self.class_set = class_set
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, frame: Frame, prediction: FrameInstances, view: np.ndarray) -> None:
        _write_png(self.folder / f"{frame.name}.png", instance_id_map(prediction, self.label_ids))
        height, width = prediction.masks.shape[1:]
        write_json(self.folder / f"{frame.name}.json", {
            "frame": frame.name, "index": frame.index, "height": height, "width": width,
            "instances": instance_records(prediction, self.class_set, self.label_ids)})
        self.frames += 1

    def close(self) -> list[Path]:
        return [self.folder] if self.frames else []


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFileSink:
    """The one picture of a single-image input (`kind` as for `ImageFolderSink`), at `path`."""

    def __init__(self, path: str | Path, kind: str = "view", renderer=None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.renderer = renderer
        self.frames = 0

    def write(self, frame: Frame, prediction: Any, view: np.ndarray) -> None:
        if self.frames:
            raise DataError(f"{self.path} holds one image, but the input has more frames; give a folder for --out")
        _write_picture(self.path, self.kind, self.renderer, prediction, view)
        self.frames += 1

    def close(self) -> list[Path]:
        return [self.path] if self.frames else []


def display_problem() -> str | None:
    """Why a window cannot open here, or None when it can."""
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    try:
        cv2.namedWindow("gkd infer", cv2.WINDOW_NORMAL)
    except cv2.error:
        return ("this OpenCV build has no GUI (opencv-python-headless); for --show install opencv-python: "
                "pip uninstall -y opencv-python-headless && pip install opencv-python")
    return None


class WindowSink:
    """Shows each annotated frame; closing is asked for with `q` or Esc (`stop_requested`)."""

    def __init__(self, title: str = "gkd infer") -> None:
        self.title = title
        self.stop_requested = False
        self.latest: np.ndarray | None = None

    def write(self, frame: Frame, prediction: Any, view: np.ndarray) -> None:
        self.latest = view  # drawn by the main thread in `refresh` (GUI toolkits want one thread)

    def refresh(self) -> None:
        view = self.latest
        if view is not None:
            cv2.imshow(self.title, view)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> list[Path]:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
        return []
