"""Write the synthetic data sets to disk in the real Cityscapes and ACDC folder layouts.

    <out>/cityscapes-synth/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <out>/cityscapes-synth/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
    <out>/cityscapes-synth/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
    <out>/acdc-synth/rgb_anon/<cond>/val/<seq>/<seq>_frame_<n>_rgb_anon.png
    <out>/acdc-synth/gt/<cond>/val/<seq>/<seq>_frame_<n>_gt_labelTrainIds.png
    <out>/acdc-synth/gt/<cond>/val/<seq>/<seq>_frame_<n>_gt_instanceIds.png      (our addition)
    <out>/proxy-synth/images/proxy_<n>.png                            (optional: the stage-1 proxy set)
    <out>/video/synth-<style>.mp4                                     (optional)

Cityscapes holds the clear source domain; ACDC one folder per adverse condition, rendered from
different scenes. Every image's scene seed is a function of (seed, split or condition, index)
only, so the output is byte-identical for any number of worker processes.

Instance ids are 16-bit PNGs in Cityscapes' encoding (label id x 1000 + instance index on each
object of the 8 thing classes, the plain label id elsewhere; see `instances`), made from the same
render as the train-id label beside them, so the two agree at every pixel. The ACDC layout holds
only `_gt_labelTrainIds.png` labels; the `_gt_instanceIds.png` files of the synthetic targets are
our addition, named after the labels beside them.

Each data set is written into a hidden staging folder and swapped into place at the end, so a
re-run replaces the previous output completely (no stale files from a bigger earlier run) and an
interrupted run leaves the previous output untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ...errors import ConfigError, DataError
from ...progress import Track, no_progress
from ..registry import DATASET_MANIFEST
from .checks import check_choice, check_int, check_size
from .render import render_frame, render_scene, render_scene_instances
from .styles import PROXY_STYLE, SOURCE_STYLE, STYLES, TARGET_STYLES

log = logging.getLogger(__name__)

CITIES = {"train": ("synthA", "synthB"), "val": ("synthC",)}
CONDITIONS = TARGET_STYLES  # ACDC's fog, night, rain, snow
ACDC_SEQUENCE_LENGTH = 25  # frames per GoPro sequence folder
CITYSCAPES_FRAME = 19  # Cityscapes annotates the 20th frame of each 30-frame snippet
VIDEO_FPS = 10.0
_STREAMS = {"train": 0, "val": 1, "fog": 2, "night": 3, "rain": 4, "snow": 5, "video": 6, "proxy": 7}



@dataclass(frozen=True)
class SyntheticSummary:
    """What `write_synthetic` wrote: data set roots, the video (or None) and image counts.

    train/val count Cityscapes images; target counts ACDC images per condition. The two
    roots are not written (nor replaced) when all three counts are 0. `proxy` is the folder of
    unlabeled proxy images (other scenes in random camera looks, no weather) or None.
    """

    cityscapes: Path
    acdc: Path
    video: Path | None
    train: int
    val: int
    target: int
    conditions: tuple[str, ...]
    size: tuple[int, int]
    seconds: float
    proxy: Path | None = None
    proxy_images: int = 0

    @property
    def images(self) -> int:
        """All still images written (source, target and proxy)."""
        return self.train + self.val + self.target * len(self.conditions) + self.proxy_images


@dataclass(frozen=True)
class _Task:
    """One image to render and the files it becomes (image, train-id label, instance ids)."""

    seed: int
    style: str
    size: tuple[int, int]
    image: Path
    label: Path | None
    instances: Path | None = None


def scene_seed(seed: int, stream: str, index: int) -> int:
    """The scene seed of image `index` of a split/condition (`stream`) under a base seed."""
    return int(np.random.SeedSequence([seed, _STREAMS[stream], index]).generate_state(1)[0])


def write_synthetic(
    out_dir: Path,
    *,
    train: int = 200,
    val: int = 50,
    target: int = 50,
    size: tuple[int, int] = (512, 256),
    seed: int = 0,
    video: bool = False,
    video_frames: int = 48,
    video_style: str = "fog",
    proxy: int = 0,
    workers: int | None = None,
    track: Track | None = no_progress,
) -> SyntheticSummary:
    """Render and write the synthetic Cityscapes (source) and ACDC (target) sets, optionally
    `proxy` unlabeled proxy images for stage 1, and a short driving video in `video_style`.

    size is (width, height), multiples of 8. workers: processes to render with (default: all
    CPUs; 1 renders in this process). track: optional progress wrapper called as
    track(iterable, description, total). Raises ConfigError naming a bad argument.
    """
    out_dir = Path(out_dir)
    train, val, target, proxy = (check_int(v, name) for v, name in ((train, "train"), (val, "val"),
                                                                     (target, "target"), (proxy, "proxy")))
    size, seed = check_size(size), check_int(seed, "seed")
    if not isinstance(video, bool):
        raise ConfigError(f"video must be True or False, got {video!r}")
    if video:
        check_int(video_frames, "video_frames", 1)
        check_choice(video_style, "video_style", STYLES)
    workers = (os.cpu_count() or 1) if workers is None else check_int(workers, "workers", 1)
    track = no_progress if track is None else track
    if not callable(track):
        raise ConfigError(f"track must be a callable track(iterable, description, total), got {track!r}")
    if train + val + target + proxy == 0 and not video:
        raise ConfigError("train, val, target and proxy are all 0 and video is off: nothing to write")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir {out_dir} exists and is not a folder")

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    cityscapes, acdc = out_dir / "cityscapes-synth", out_dir / "acdc-synth"
    jobs = train + val + target * len(CONDITIONS) + proxy + (video_frames if video else 0)
    with _Renderer(min(workers, jobs)) as renderer:
        if train + val + target:  # a video-only call leaves existing image sets alone
            with _staged(cityscapes) as stage_cs, _staged(acdc) as stage_acdc:
                tasks = _cityscapes_tasks(stage_cs, train, val, size, seed) + _acdc_tasks(stage_acdc, target, size, seed)
                for stage in (stage_cs, stage_acdc):
                    _write_manifest(stage)
                done = renderer.map_unordered(_write_pair, tasks)
                for _ in track(done, "Rendering synthetic street scenes", len(tasks)):
                    pass
        proxy_root = None
        if proxy:
            proxy_root = out_dir / "proxy-synth"
            with _staged(proxy_root) as stage_proxy:
                tasks = _proxy_tasks(stage_proxy, proxy, size, seed)
                for _ in track(renderer.map_unordered(_write_image, tasks), "Rendering proxy images", proxy):
                    pass
        video_path = None
        if video:
            video_path = _write_video(renderer, out_dir / "video" / f"synth-{video_style}.mp4", scene_seed(seed, "video", 0),
                                      video_frames, size, video_style, track)
    seconds = time.perf_counter() - started
    summary = SyntheticSummary(cityscapes, acdc, video_path, train, val, target, CONDITIONS, size, round(seconds, 3),
                               proxy_root, proxy)
    log.info("wrote %d synthetic images%s to %s in %.1f s", summary.images, " and a video" if video else "", out_dir, seconds)
    return summary


# -- layouts ------------------------------------------------------------------------------------


def _cityscapes_tasks(stage: Path, train: int, val: int, size, seed: int) -> list[_Task]:
    """Source images round-robin over each split's cities, named like Cityscapes'."""
    tasks = []
    for split, count in (("train", train), ("val", val)):
        cities = CITIES[split]
        for city in cities:
            (stage / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (stage / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            city = cities[index % len(cities)]
            stem = f"{city}_{index // len(cities):06d}_{CITYSCAPES_FRAME:06d}"
            label_dir = stage / "gtFine" / split / city
            tasks.append(_Task(scene_seed(seed, split, index), SOURCE_STYLE, size,
                               stage / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                               label_dir / f"{stem}_gtFine_labelTrainIds.png", label_dir / f"{stem}_gtFine_instanceIds.png"))
    return tasks


def _acdc_tasks(stage: Path, target: int, size, seed: int) -> list[_Task]:
    """Target images per condition in GoPro-named sequence folders, named like ACDC's."""
    tasks = []
    for c, cond in enumerate(CONDITIONS):
        for index in range(target):
            sequence = f"GOPR{(c + 1) * 100 + index // ACDC_SEQUENCE_LENGTH:04d}"
            image_dir = stage / "rgb_anon" / cond / "val" / sequence
            label_dir = stage / "gt" / cond / "val" / sequence
            if index % ACDC_SEQUENCE_LENGTH == 0:
                image_dir.mkdir(parents=True, exist_ok=True)
                label_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{sequence}_frame_{index:06d}"
            tasks.append(_Task(scene_seed(seed, cond, index), cond, size, image_dir / f"{stem}_rgb_anon.png",
                               label_dir / f"{stem}_gt_labelTrainIds.png", label_dir / f"{stem}_gt_instanceIds.png"))
    return tasks


def _proxy_tasks(stage: Path, count: int, size, seed: int) -> list[_Task]:
    """Proxy images: scenes of their own stream, each in a random camera look (no weather)."""
    (stage / "images").mkdir(parents=True, exist_ok=True)
    return [_Task(scene_seed(seed, "proxy", index), PROXY_STYLE, size, stage / "images" / f"proxy_{index:06d}.png", None)
            for index in range(count)]


def _write_manifest(root: Path) -> None:
    """Score the synthetic domains at the resolution they are rendered at: the real sets' test-time
    resizes (Cityscapes to 1024 x 512, ...) are for their own native resolutions."""
    (root / DATASET_MANIFEST).write_text(json.dumps({"eval_size": None}) + "\n")


# -- rendering ----------------------------------------------------------------------------------


def _write_pair(task: _Task) -> str:
    """Render one scene and write its image (RGB PNG), label (1-channel train-id PNG) and
    instance ids (1-channel 16-bit PNG)."""
    image, label, instances = render_scene_instances(task.seed, task.size, task.style)
    _write_png(task.image, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    _write_png(task.label, label)
    _write_png(task.instances, instances)
    return task.image.name


def _write_image(task: _Task) -> str:
    """Render one scene and write its image only (the proxy set is unlabeled)."""
    image, _ = render_scene(task.seed, task.size, task.style)
    _write_png(task.image, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return task.image.name


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"OpenCV could not encode {path.name} as PNG")
    path.write_bytes(data.tobytes())


def _init_worker() -> None:
    """Worker processes render one image each at a time: keep OpenCV single-threaded so two
    workers on two cores do not fight over threads."""
    cv2.setNumThreads(1)


class _Renderer:
    """Runs render jobs in a process pool (or inline for one worker).

    Workers are started with "spawn": forking a process whose OpenCV (or PyTorch) thread pool
    has run deadlocks the children (observed here with opencv-python). Spawned children would
    normally re-import the caller's __main__, which breaks scripts without an
    `if __name__ == "__main__":` guard and re-runs whatever they do at import; the workers
    only need this package, so the main module is hidden from them while they start.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = None

    def __enter__(self) -> _Renderer:
        if self.workers > 1:
            with _main_module_hidden():
                self.pool = multiprocessing.get_context("spawn").Pool(self.workers, initializer=_init_worker)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is None:
            return
        if exc[0] is not None:
            self.pool.terminate()  # do not wait for queued work after a failure
        else:
            self.pool.close()
        self.pool.join()

    def map_unordered(self, fn, items: list) -> Iterator:
        if self.pool is None:
            return map(fn, items)
        return self.pool.imap_unordered(fn, items, chunksize=max(1, min(8, len(items) // (4 * self.workers))))

    def map_ordered(self, fn, items: list) -> Iterator:
        if self.pool is None:
            return map(fn, items)
        return self.pool.imap(fn, items, chunksize=max(1, min(4, len(items) // (4 * self.workers))))


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Make spawned children skip importing the parent's __main__ (see `_Renderer`).

    multiprocessing finds the main module through its __spec__ and __file__; without them
    the child starts from a bare interpreter and imports only what unpickling needs.
    """
    main = sys.modules.get("__main__")
    saved = {key: main.__dict__[key] for key in ("__spec__", "__file__") if main is not None and key in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


@contextlib.contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A fresh hidden folder beside `final` that replaces `final` if the block succeeds,
    and is removed if it fails (the previous output stays as it was)."""
    stage = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    stage.rename(final)


# -- video --------------------------------------------------------------------------------------


def _frame_job(args: tuple[int, int, tuple[int, int], str]) -> np.ndarray:
    seed, index, size, style = args
    image, _ = render_frame(seed, index, size, style, VIDEO_FPS)
    return image


def _write_video(renderer: _Renderer, path: Path, seed: int, frames: int, size: tuple[int, int], style: str, track: Track) -> Path:
    """Render a forward drive through one scene and encode it as MP4 (mp4v, 10 fps).

    The file is written under a temporary name, re-opened to check its frame count and size,
    and only then moved into place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, size)
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write MP4 (mp4v) video to {tmp.parent}; check the folder is writable "
                        "and that this OpenCV build has video encoding (opencv-python-headless does)")
    try:
        jobs = [(seed, i, size, style) for i in range(frames)]
        for image in track(renderer.map_ordered(_frame_job, jobs), f"Rendering {style} video", frames):
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        _check_video(tmp, frames, size)
        os.replace(tmp, path)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return path


def _check_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    """Re-open a written video and check it decodes to `frames` frames of `size`."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"the video just written cannot be opened again: {path}")
        count = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if (frame.shape[1], frame.shape[0]) != size:
                raise DataError(f"video frame {count} is {frame.shape[1]}x{frame.shape[0]}, expected {size[0]}x{size[1]}")
            count += 1
    finally:
        cap.release()
    if count != frames:
        raise DataError(f"the video decodes to {count} frames, expected {frames}: {path}")
