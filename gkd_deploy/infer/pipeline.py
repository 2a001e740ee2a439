"""Decode, segment and encode in three overlapping stages joined by bounded queues.

    decoder thread --(frames)--> main thread: model --(frames, predictions)--> writer thread: render, encode

The model runs on the calling thread (CUDA contexts, onnxruntime sessions and GUI windows are
happiest there) while a decoder thread reads ahead and a writer thread renders and encodes behind;
the queues are bounded, so memory stays flat on a long video. Frames are batched up to `batch`
with whatever the decoder has ready, never waiting for a batch to fill.

File sources (videos, images) lose nothing: every decoded frame is segmented and written, in
order. Live sources (cameras, streams) keep latency low instead: when the model falls behind, the
oldest waiting frame is dropped and counted. Ctrl-C stops reading, finishes the frames already in
flight and closes the outputs, so what was written stays a valid file.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from gkd_deploy.errors import ConfigError
from gkd_deploy.infer.render import Renderer
from gkd_deploy.infer.render_instances import InstanceRenderer
from gkd_deploy.infer.segment import FrameSegmenter
from gkd_deploy.infer.sinks import Sink, WindowSink
from gkd_deploy.infer.sources import Frame, FrameSource
from gkd_deploy.progress import Track, no_progress

log = logging.getLogger(__name__)

_END = object()
_POLL = 0.05  # seconds between checks of the stop flag while a queue is full or empty


@dataclass
class InferStats:
    """What one `gkd infer` run did. `fps` is the whole pipeline's rate; `model_fps` the rate of
    the predictor calls alone (the bare model), so their ratio is the pipeline's overhead."""

    source: str
    kind: str
    expected: int | None
    decoded: int = 0
    processed: int = 0
    written: int = 0
    dropped: int = 0
    unreadable: list[str] = field(default_factory=list)
    truncated: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    decode_seconds: float = 0.0
    segment_seconds: float = 0.0
    model_seconds: float = 0.0
    write_seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.processed / self.model_seconds if self.model_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "kind": self.kind, "expected_frames": self.expected, "decoded": self.decoded,
            "processed": self.processed, "written": self.written, "dropped": self.dropped,
            "unreadable": self.unreadable, "truncated": self.truncated, "interrupted": self.interrupted,
            "seconds": round(self.seconds, 4), "fps": round(self.fps, 3), "model_fps": round(self.model_fps, 3),
            "decode_seconds": round(self.decode_seconds, 4), "segment_seconds": round(self.segment_seconds, 4),
            "model_seconds": round(self.model_seconds, 4), "write_seconds": round(self.write_seconds, 4),
            "outputs": [str(p) for p in self.outputs],
        }


@dataclass(frozen=True)
class PipelineOptions:
    batch: int = 1
    queue_size: int = 8
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"batch must be 1 or more, got {self.batch}")
        if self.queue_size < 1:
            raise ConfigError(f"queue size must be 1 or more, got {self.queue_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max frames must be 1 or more, got {self.max_frames}")


class _Pipeline:
    def __init__(self, source: FrameSource, segmenter: FrameSegmenter, renderer: Renderer | InstanceRenderer,
                 sinks: Sequence[Sink], options: PipelineOptions) -> None:
        self.source, self.segmenter, self.renderer, self.sinks, self.options = source, segmenter, renderer, sinks, options
        self.frames: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self.results: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.stats = InferStats(source=source.description, kind=source.kind, expected=source.expected)
        self.windows = [sink for sink in sinks if isinstance(sink, WindowSink)]
        self.exhausted = False  # the source ran out (as opposed to a stop or --max-frames)

    # -- queues -----------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        """Blocking put that gives up when the pipeline stops (False)."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, item) -> None:
        """Live sources: never block the camera; drop the oldest waiting frame instead."""
        while True:
            try:
                self.frames.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    # -- stages -----------------------------------------------------------------------------
    def _decode(self) -> None:
        frames = iter(self.source)
        try:
            while not self.stop.is_set():
                if self.options.max_frames is not None and self.source.decoded >= self.options.max_frames:
                    break
                started = time.perf_counter()
                frame = next(frames, None)
                self.stats.decode_seconds += time.perf_counter() - started
                if frame is None:
                    self.exhausted = True
                    break
                if self.source.live:
                    self._put_latest(frame)
                elif not self._put(self.frames, frame):
                    break
        except BaseException as error:  # handed to the main thread, which raises it
            self.errors.append(error)
        finally:
            if self.source.live:
                self._put_latest(_END)
            else:
                self._put(self.frames, _END)

    def _write(self) -> None:
        try:
            while True:
                item = self.results.get()
                if item is _END:
                    return
                frame, prediction = item
                started = time.perf_counter()
                view = self.renderer.view(frame.image, prediction)
                for sink in self.sinks:
                    sink.write(frame, prediction, view)
                self.stats.write_seconds += time.perf_counter() - started
                self.stats.written += 1
        except BaseException as error:
            self.errors.append(error)
            self.stop.set()

    def _next_batch(self) -> tuple[list, bool]:
        """Up to `batch` frames: waits for the first, takes the rest only if already decoded."""
        while True:
            if self.errors or self.stop.is_set():
                return [], True
            try:
                first = self.frames.get(timeout=_POLL)
                break
            except queue.Empty:
                self._refresh_windows()
        if first is _END:
            return [], True
        batch = [first]
        while len(batch) < self.options.batch:
            try:
                item = self.frames.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def _refresh_windows(self) -> None:
        for window in self.windows:
            window.refresh()
            if window.stop_requested:
                self.stop.set()

    def _segmented(self) -> Iterator[Frame]:
        """Segment what the decoder has ready, batch by batch, and hand it to the writer; yields
        each frame once it is segmented and counted (what `track` counts)."""
        done = False
        while not done:
            batch, done = self._next_batch()
            if not batch:
                continue
            predictions = self.segmenter([frame.image for frame in batch])
            for item in zip(batch, predictions):
                if not self._put(self.results, item):
                    break
            self.stats.processed += len(batch)
            self._refresh_windows()
            yield from batch

    def _frames_to_segment(self) -> int | None:
        """The source's expected frames, at most --max-frames; None for a live source without a cap."""
        expected, cap = self.source.expected, self.options.max_frames
        if expected is None or cap is None:
            return expected if cap is None else cap
        return min(expected, cap)

    def run(self, track: Track) -> InferStats:
        decoder = threading.Thread(target=self._decode, name="gkd-decode", daemon=True)
        writer = threading.Thread(target=self._write, name="gkd-write", daemon=True)
        started = time.perf_counter()
        decoder.start()
        writer.start()
        try:
            for _ in track(self._segmented(), "segmenting", self._frames_to_segment()):
                pass
        except KeyboardInterrupt:
            self.stats.interrupted = True
            log.info("interrupted: finishing the frames in flight and closing the outputs")
        finally:
            if self.stats.interrupted or self.errors:
                self.stop.set()
            # The writer drains what was segmented, then the outputs are closed (videos finalised).
            while writer.is_alive():
                try:
                    self.results.put(_END, timeout=_POLL)
                    break
                except queue.Full:
                    continue
            writer.join()
            self.stop.set()
            decoder.join(timeout=5.0)
            for sink in self.sinks:
                try:
                    self.stats.outputs.extend(sink.close())
                except BaseException as error:
                    self.errors.append(error)
            self.source.close()
            self.stats.seconds = time.perf_counter() - started
            self.stats.segment_seconds = self.segmenter.times.total
            self.stats.model_seconds = self.segmenter.times.model
            self.stats.decoded = self.source.decoded
            self.stats.unreadable = list(self.source.unreadable)
            self.stats.truncated = self.exhausted and self.source.truncated
        if self.errors:
            raise self.errors[0]
        return self.stats


def run_pipeline(source: FrameSource, segmenter: FrameSegmenter, renderer: Renderer | InstanceRenderer,
                 sinks: Sequence[Sink], options: PipelineOptions = PipelineOptions(),
                 track: Track = no_progress) -> InferStats:
    """Segment every frame of `source` and hand (frame, prediction, view) to each sink, in order: the
    prediction is what `segmenter` gives (a label map, or an instance model's `FrameInstances`), the
    view what `renderer` draws of it. `track` counts the frames as they are segmented (its total is
    the source's expected count or `max_frames`, whichever is smaller; None for a live source
    without `max_frames`)."""
    return _Pipeline(source, segmenter, renderer, sinks, options).run(track)
