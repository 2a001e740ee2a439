"""`gkd infer` as a function: a source and a model in, annotated frames and a summary out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gkd_deploy.errors import ConfigError
from gkd_deploy.fileio import write_json
from gkd_deploy.infer import DEFAULT_SCORE_THRESHOLD
from gkd_deploy.infer.instances import InstanceFrameSegmenter, check_score_threshold
from gkd_deploy.infer.pipeline import InferStats, PipelineOptions, run_pipeline
from gkd_deploy.infer.render import Renderer
from gkd_deploy.infer.render_instances import InstanceRenderer
from gkd_deploy.infer.segment import FrameSegmenter
from gkd_deploy.infer.sinks import (IMAGE_SUFFIXES, VIDEO_CODECS, ImageFileSink, ImageFolderSink, InstanceLabelSink,
                                   Sink, VideoSink, WindowSink, display_problem, is_video_path)
from gkd_deploy.infer.sources import FrameSource, open_source
from gkd_deploy.progress import Track, no_progress
from gkd_deploy.runtime.base import InstancePredictor, ModelInfo, Predictor
from gkd_deploy.runtime.loader import load_predictor


@dataclass(frozen=True)
class InferSettings:
    """`out`: a video file (.mp4, .avi, ...) or a folder for one annotated PNG per frame; None
    writes `default_output(...)` for file sources and nothing for live ones. `masks` / `labels`:
    folders for colour masks and raw train-id PNGs (an instance model's: Cityscapes instance-id PNGs
    and a JSON of the instances per frame, `sinks.InstanceLabelSink`). `size` is (height, width)
    for PyTorch models. `legend`: the key of the classes in view and a caption naming the model, on
    annotated pictures (an instance model tags each instance whatever it says). `score_threshold`:
    an instance model's instances scoring less are not drawn nor written."""

    out: Path | None = None
    masks: Path | None = None
    labels: Path | None = None
    side_by_side: bool = False
    alpha: float = 0.5
    legend: bool = True
    show: bool = False
    mode: str = "resize"
    size: tuple[int, int] | None = None
    batch: int = 1
    queue_size: int = 8
    max_frames: int | None = None
    fps: float | None = None
    device: str = "auto"
    json_path: Path | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD

    def __post_init__(self) -> None:
        # Checked before a source is opened or an output written.
        check_score_threshold(self.score_threshold)
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"--fps must be a positive frame rate, got {self.fps}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--alpha must be between 0 and 1, got {self.alpha}")
        for name in ("batch", "queue_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be at least 1, got {self.max_frames}")


@dataclass(frozen=True)
class InferStart:
    """What `infer` opened, handed to its `started` hook before the first frame: which model, which
    source (its description, kind, frame rate and expected frame count, None for a live one), and
    advice known already (e.g. frames stretched to the model's shape), so that a user can stop and
    fix it before the work rather than read it after."""

    model: ModelInfo
    source: str
    kind: str
    fps: float
    frames: int | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InferResult:
    stats: InferStats
    model: ModelInfo
    warnings: tuple[str, ...]
    notes: tuple[str, ...] = ()  # advice that is not a problem (e.g. frames stretched to the model's shape)


def model_caption(info: ModelInfo) -> str:
    """The line over each annotated picture: which file, run on what, at which precision."""
    name = Path(str(info.source)).name or str(info.source)
    return f"{name}  {info.backend} {info.precision}"


def default_output(source: FrameSource, spec: str | Path) -> Path | None:
    """`<name>-seg.mp4` for a video, `<name>-seg/` for images (in the working folder); none for live sources."""
    if source.live:
        return None
    path = Path(str(spec))
    if source.kind == "video":
        return Path(f"{path.stem}-seg.mp4")
    if _single_image(source, spec):
        return Path(f"{path.stem}-seg.png")  # one image in, one image out
    name = path.stem if path.is_file() else (path.name if path.is_dir() else "images")
    return Path(f"{name}-seg")


def _single_image(source: FrameSource, spec: str | Path) -> bool:
    return source.kind == "images" and source.expected == 1 and Path(str(spec)).is_file()


@dataclass(frozen=True)
class TaskParts:
    """What `gkd infer` does its own way for each task: fit frames to the model and predict, draw
    the predictions, and write `--labels`."""

    segmenter: Callable[[Predictor | InstancePredictor, InferSettings], FrameSegmenter]
    renderer: Callable[[ModelInfo, InferSettings], Renderer | InstanceRenderer]
    labels_sink: Callable[[Path, ModelInfo], Sink]


def _caption(info: ModelInfo, settings: InferSettings) -> str | None:
    return model_caption(info) if settings.legend else None


def _semantic_segmenter(predictor: Predictor, settings: InferSettings) -> FrameSegmenter:
    return FrameSegmenter(predictor, mode=settings.mode, size=settings.size)


def _instance_segmenter(predictor: InstancePredictor, settings: InferSettings) -> InstanceFrameSegmenter:
    return InstanceFrameSegmenter(predictor, mode=settings.mode, size=settings.size,
                                  score_threshold=settings.score_threshold)


def _semantic_renderer(info: ModelInfo, settings: InferSettings) -> Renderer:
    return Renderer(info.class_set, alpha=settings.alpha, side_by_side=settings.side_by_side, legend=settings.legend,
                    caption=_caption(info, settings))


def _instance_renderer(info: ModelInfo, settings: InferSettings) -> InstanceRenderer:
    return InstanceRenderer(info.class_set, alpha=settings.alpha, side_by_side=settings.side_by_side,
                            caption=_caption(info, settings))


def _semantic_labels(folder: Path, info: ModelInfo) -> Sink:
    return ImageFolderSink(folder, "labels")


def _instance_labels(folder: Path, info: ModelInfo) -> Sink:
    return InstanceLabelSink(folder, info.class_set)


TASKS: dict[str, TaskParts] = {
    "semantic": TaskParts(_semantic_segmenter, _semantic_renderer, _semantic_labels),
    "instance": TaskParts(_instance_segmenter, _instance_renderer, _instance_labels),
}


def _sinks(source: FrameSource, spec: str | Path, settings: InferSettings, parts: TaskParts, info: ModelInfo,
           renderer: Renderer | InstanceRenderer, warnings: list[str]) -> list[Sink]:
    sinks: list[Sink] = []
    out = settings.out if settings.out is not None else default_output(source, spec)
    if out is not None:
        if not source.live and Path(str(spec)).resolve() == Path(out).resolve():
            raise ConfigError(f"--out {out} is the input itself; choose another file")
        out = Path(out)
        if out.suffix.lower() in IMAGE_SUFFIXES:
            if not _single_image(source, spec):
                raise ConfigError(f"--out {out} is one image, but the input has several frames: give a folder (no "
                                  f"suffix) for one annotated PNG per frame, or a video file")
            sinks.append(ImageFileSink(out, "view"))
        elif out.suffix and not is_video_path(out):
            raise ConfigError(f"--out {out}: give a video file ({', '.join(VIDEO_CODECS)}), an image file (for one "
                              "input image) or a folder (no suffix) for one annotated PNG per frame")
        else:
            sinks.append(VideoSink(out, source.fps) if is_video_path(out) else ImageFolderSink(out, "view"))
    if settings.masks is not None:
        sinks.append(ImageFolderSink(settings.masks, "mask", renderer))
    if settings.labels is not None:
        sinks.append(parts.labels_sink(settings.labels, info))
    if settings.show:
        problem = display_problem()
        if problem:
            warnings.append(f"--show ignored: {problem}")
        else:
            sinks.append(WindowSink())
    return sinks


def infer(source_spec: str | Path, model: str | Path, settings: InferSettings = InferSettings(),
          track: Track = no_progress, started: Callable[[InferStart], None] | None = None) -> InferResult:
    """Segment every frame of `source_spec` with `model` (run folder, checkpoint, .onnx, engine;
    semantic or instance, `TASKS`). `started(InferStart)` is called once everything is open, before
    the first frame: advice such as frames being stretched is known then, not only at the end.
    `track` counts the frames as they are segmented."""
    predictor = load_predictor(model, settings.device)
    info = predictor.info
    parts = TASKS[info.task]
    segmenter = parts.segmenter(predictor, settings)
    renderer = parts.renderer(info, settings)
    options = PipelineOptions(batch=settings.batch, queue_size=settings.queue_size, max_frames=settings.max_frames)
    source = open_source(source_spec, fps=settings.fps)
    warnings: list[str] = []
    try:
        sinks = _sinks(source, source_spec, settings, parts, info, renderer, warnings)
    except BaseException:
        source.close()
        raise
    notes = []
    if source.frame_size is not None and (note := segmenter.aspect_note(*source.frame_size)):
        notes.append(note)
    if started is not None:
        started(InferStart(model=info, source=source.description, kind=source.kind, fps=source.fps,
                           frames=source.expected, notes=tuple(notes)))
    stats = run_pipeline(source, segmenter, renderer, sinks, options, track)
    if stats.truncated:
        warnings.append(f"{source.description} is truncated or corrupt: {source.decoded} of the {source.expected} "
                        "frames its header promises decoded; all of them were processed")
    if stats.unreadable:
        warnings.append(f"{len(stats.unreadable)} unreadable image(s) skipped: {', '.join(stats.unreadable[:5])}"
                        + (" ..." if len(stats.unreadable) > 5 else ""))
    if stats.dropped:
        warnings.append(f"{stats.dropped} live frame(s) dropped while the model was busy")
    if settings.json_path is not None:
        task = {"task": info.task} | ({"score_threshold": settings.score_threshold} if info.task == "instance" else {})
        write_json(settings.json_path, {"model": info.source, "backend": info.backend, "precision": info.precision,
                                        **task, "mode": settings.mode, "batch": settings.batch, **stats.to_dict(),
                                        "warnings": warnings})
    return InferResult(stats=stats, model=info, warnings=tuple(warnings), notes=tuple(notes))
