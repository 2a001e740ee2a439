"""`gkd infer`: sources, the overlapping pipeline, outputs and bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.data.classes import CITYSCAPES
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.inference import predict_logits
from gkd_deploy.evaluation.evaluator import tensor_predictor
from gkd_deploy.evaluation.inference import default_inference_mode
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.fileio import write_yaml
from gkd_deploy.infer import PipelineOptions, run_pipeline
from gkd_deploy.infer.render import Renderer
from gkd_deploy.infer.segment import FrameSegmenter
from gkd_deploy.infer.sinks import ImageFolderSink, VideoSink
from gkd_deploy.infer.sources import Frame, FrameSource, open_source
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir
from gkd_deploy.runtime.base import ModelInfo
from gkd_deploy.runtime.loader import load_predictor

runner = CliRunner()


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from gkd_deploy.data.synthetic import write_synthetic

    data = write_synthetic(tmp_path_factory.mktemp("infer-data"), train=0, val=0, target=0, size=(128, 64),
                           video=True, video_frames=10, workers=1)
    return data.video


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    run = RunDir(tmp_path_factory.mktemp("infer-run"))
    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64,
                                            decoder_options={"neck_channels": 32, "head_channels": 16, "groups": 4}))
    save_segmenter(model, run.segmenter_checkpoint)
    write_yaml(run.config_path, {"targets": []})
    export_model(run.path, precisions=("fp32",))
    return run


class IndexPredictor:
    """Predicts class (mean brightness // 10) % 19 everywhere: a frame's labels tell which frame it was."""

    def __init__(self, delay: float = 0.0, interrupt_on_call: int | None = None) -> None:
        self.info = ModelInfo(class_set=CITYSCAPES, input_size=(32, 48), precision="fp32", backend="test",
                              source="index", patch_size=16)
        self.delay, self.interrupt_on_call, self.calls, self.batches = delay, interrupt_on_call, 0, []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        assert isinstance(images, np.ndarray) and images.dtype == np.float32  # the predictor interface
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        self.batches.append(images.shape[0])
        classes = (images.mean(axis=(1, 2, 3)) // 10).astype(np.int64) % 19
        scores = np.eye(19, dtype=np.float32)[classes][:, :, None, None]
        return np.ascontiguousarray(np.broadcast_to(scores, (*scores.shape[:2], *images.shape[-2:])))

    def labels(self, images: np.ndarray) -> np.ndarray:
        return self(images).argmax(1).astype(np.uint8)


def frame_value(index: int) -> int:
    return 10 * (index % 19) + 5  # class index % 19, in the middle of a class bucket, so codec noise cannot move it


def write_indexed_video(path: Path, frames: int, fourcc: str = "MJPG", size=(96, 64)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 12.0, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), frame_value(i), np.uint8))
    writer.release()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def run_indexed(source, predictor, tmp_path, options=PipelineOptions(), sinks=None):
    renderer = Renderer(CITYSCAPES)
    labels_dir = tmp_path / "labels"
    sinks = sinks if sinks is not None else [ImageFolderSink(labels_dir, "labels"), VideoSink(tmp_path / "out.avi", 12.0)]
    stats = run_pipeline(source, FrameSegmenter(predictor), renderer, sinks, options)
    return stats, labels_dir


# -- the pipeline ---------------------------------------------------------------------------------
def test_every_frame_is_segmented_and_written_in_order(tmp_path):
    video = write_indexed_video(tmp_path / "in.avi", 17)
    predictor = IndexPredictor(delay=0.002)
    stats, labels_dir = run_indexed(open_source(video), predictor, tmp_path,
                                    PipelineOptions(batch=4, queue_size=2))
    assert (stats.expected, stats.decoded, stats.processed, stats.written, stats.dropped) == (17, 17, 17, 17, 0)
    assert not stats.truncated and not stats.interrupted
    assert sum(predictor.batches) == 17 and max(predictor.batches) <= 4
    for i in range(17):
        label = cv2.imread(str(labels_dir / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 96) and label.dtype == np.uint8
        assert np.all(label == (frame_value(i) // 10) % 19), i
    written = decode_all(tmp_path / "out.avi")
    assert len(written) == 17 and written[0].shape == (64, 96, 3)
    # frame i of the output is frame i's overlay: its colour is the blend of the frame and class i's colour
    for i in (0, 8, 16):
        colour = np.array(CITYSCAPES.palette[(frame_value(i) // 10) % 19][::-1], np.float32)
        want = 0.5 * frame_value(i) + 0.5 * colour
        assert np.abs(written[i].reshape(-1, 3).mean(0) - want).max() < 6, i


def test_truncated_video_processes_what_decodes_and_writes_a_playable_file(tmp_path):
    video = write_indexed_video(tmp_path / "full.avi", 20)
    data = video.read_bytes()
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(data[: len(data) * 4 // 5])  # the header survives, the last frames do not
    stats, _ = run_indexed(open_source(truncated), IndexPredictor(), tmp_path)
    assert stats.truncated and stats.expected == 20
    assert 0 < stats.decoded < 20 and stats.processed == stats.written == stats.decoded
    assert len(decode_all(tmp_path / "out.avi")) == stats.decoded


def test_bad_video_files_fail_clearly_and_leave_no_output(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_source(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_source(tmp_path / "junk.mp4")
    # An MP4 cut short loses its index (written last): it cannot be opened at all.
    full = write_indexed_video(tmp_path / "full.mp4", 8, fourcc="mp4v")
    (tmp_path / "cut.mp4").write_bytes(full.read_bytes()[:300])
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_source(tmp_path / "cut.mp4")
    with pytest.raises(DataError, match="cannot open camera 97"):
        open_source("97")


def test_an_empty_video_is_an_error_and_no_output_is_left(tmp_path):
    class EmptyVideo(FrameSource):
        def _frames(self):
            raise DataError("in.mp4: no frame could be decoded")
            yield  # pragma: no cover

    with pytest.raises(DataError, match="no frame"):
        run_indexed(EmptyVideo(description="in.mp4", kind="video", expected=5), IndexPredictor(), tmp_path)
    assert not (tmp_path / "out.avi").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # no partial file either


def test_image_folders_skip_unreadable_images_and_single_images_must_read(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(("b.png", "a.jpg", "c.png")):
        cv2.imwrite(str(folder / name), np.full((40 + 8 * i, 56, 3), frame_value(i), np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("ignored")
    source = open_source(folder)
    assert source.kind == "images" and source.expected == 4
    stats, labels_dir = run_indexed(source, IndexPredictor(), tmp_path, sinks=[ImageFolderSink(tmp_path / "labels", "labels")])
    assert stats.processed == 3 and stats.unreadable == [str(folder / "broken.png")]
    assert sorted(p.name for p in labels_dir.iterdir()) == ["a.png", "b.png", "c.png"]
    assert cv2.imread(str(labels_dir / "c.png"), cv2.IMREAD_UNCHANGED).shape == (56, 56)  # each image's own size
    with pytest.raises(DataError, match="not a readable image"):
        list(open_source(folder / "broken.png"))
    assert open_source(str(folder / "*.png")).expected == 3
    with pytest.raises(DataError, match="no images match"):
        open_source(str(folder / "*.tif"))


def test_ctrl_c_keeps_the_frames_done_and_a_valid_video(tmp_path):
    video = write_indexed_video(tmp_path / "in.avi", 30)
    predictor = IndexPredictor(interrupt_on_call=4)
    stats, _ = run_indexed(open_source(video), predictor, tmp_path, PipelineOptions(batch=2, queue_size=2))
    done = sum(predictor.batches)  # three model calls finished before Ctrl-C arrived in the fourth
    assert len(predictor.batches) == 3 and 3 <= done <= 6
    assert stats.interrupted and stats.processed == stats.written == done
    assert len(decode_all(tmp_path / "out.avi")) == done


def test_live_sources_drop_the_oldest_frames_when_the_model_is_slow(tmp_path):
    class FastCamera(FrameSource):
        def _frames(self):
            for i in range(40):
                yield Frame(i, f"frame_{i:06d}", np.full((32, 48, 3), frame_value(i), np.uint8))

    seen = []

    class Recorder:
        def write(self, frame, labels, view):
            seen.append(frame.index)

        def close(self):
            return []

    stats, _ = run_indexed(FastCamera(description="camera 0", kind="camera"), IndexPredictor(delay=0.02), tmp_path,
                           PipelineOptions(queue_size=2), sinks=[Recorder()])
    assert stats.decoded == 40 and stats.dropped > 0
    assert stats.processed + stats.dropped == 40
    assert seen == sorted(seen) and seen[-1] == 39  # never reordered; the newest frame is always kept


def test_max_frames_stops_early_without_calling_the_video_truncated(tmp_path):
    video = write_indexed_video(tmp_path / "in.avi", 12)
    stats, _ = run_indexed(open_source(video), IndexPredictor(), tmp_path, PipelineOptions(max_frames=5))
    assert stats.processed == 5 and not stats.truncated


def test_track_counts_each_frame_once_it_is_segmented(tmp_path):
    predictor = IndexPredictor()
    counted, totals = [], []

    def track(items, description, total):
        totals.append((description, total))
        for frame in items:
            counted.append((frame.index, sum(predictor.batches)))  # (frame, frames segmented by then)
            yield frame

    video = write_indexed_video(tmp_path / "in.avi", 9)
    stats = run_pipeline(open_source(video), FrameSegmenter(predictor), Renderer(CITYSCAPES), [],
                         PipelineOptions(batch=4), track=track)
    assert totals == [("segmenting", 9)] and stats.processed == 9
    assert [index for index, _ in counted] == list(range(9))
    assert all(segmented > index for index, segmented in counted)

    class Camera(FrameSource):
        def _frames(self):
            yield from (Frame(i, f"frame_{i:06d}", np.zeros((32, 48, 3), np.uint8)) for i in range(3))

    run_pipeline(Camera(description="camera 0", kind="camera"), FrameSegmenter(IndexPredictor()), Renderer(CITYSCAPES),
                 [], track=track)
    assert totals[-1] == ("segmenting", None)  # a live source: nobody knows how many frames come
    run_pipeline(open_source(video), FrameSegmenter(IndexPredictor()), Renderer(CITYSCAPES), [],
                 PipelineOptions(max_frames=4), track=track)
    assert totals[-1] == ("segmenting", 4)  # the bar ends where --max-frames stops
    run_pipeline(Camera(description="camera 0", kind="camera"), FrameSegmenter(IndexPredictor()), Renderer(CITYSCAPES),
                 [], PipelineOptions(max_frames=2), track=track)
    assert totals[-1] == ("segmenting", 2)


def test_infer_says_what_it_opened_and_its_notes_before_the_first_frame(run, clip, tmp_path):
    from gkd_deploy.infer import InferSettings, InferStart, infer

    events = []

    def track(items, description, total):
        events.append(("track", description, total))
        for frame in items:
            events.append("frame")
            yield frame

    model = run.export_dir / "model-fp32.onnx"
    result = infer(clip, model, InferSettings(out=tmp_path / "out.mp4"), track=track, started=events.append)
    start = events[0]
    assert isinstance(start, InferStart) and start.model == result.model and start.model.backend == "onnxruntime"
    assert (start.source, start.kind, start.fps, start.frames) == (str(clip), "video", 10.0, 10)
    assert start.notes == result.notes and "stretched" in start.notes[0]
    assert events[1:] == [("track", "segmenting", 10)] + ["frame"] * 10


# -- the model side -------------------------------------------------------------------------------
def test_resize_and_slide_modes_match_the_model_run_by_hand(run, clip):
    frame = decode_all(clip)[3]
    predictor = load_predictor(run.export_dir / "model-fp32.onnx")
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (64, 64), interpolation=cv2.INTER_AREA)
    by_hand = predictor(small.transpose(2, 0, 1)[None].astype(np.float32)).argmax(1)[0].astype(np.uint8)
    by_hand = cv2.resize(by_hand, (128, 64), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(FrameSegmenter(predictor)([frame])[0], by_hand)

    # the runtime's windows (numpy) give the labels the evaluation's windows (torch) give
    mode = default_inference_mode(64, 16, crop_width=64)
    scores = predict_logits(tensor_predictor(predictor), torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), mode)
    assert isinstance(scores, torch.Tensor)
    np.testing.assert_array_equal(FrameSegmenter(predictor, mode="slide")([frame])[0], scores.argmax(1)[0].numpy())


def test_exported_models_refuse_another_input_size(run):
    predictor = load_predictor(run.export_dir / "model-fp32.onnx")
    with pytest.raises(ConfigError, match="exported for 64x64"):
        FrameSegmenter(predictor, size=(128, 128))
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        FrameSegmenter(load_predictor(run.path), size=(100, 64))
    torch_model = FrameSegmenter(load_predictor(run.path))
    assert torch_model.input_size((70, 130)) == (64, 128)  # a PyTorch model sees the frame at its own size
    assert torch_model.aspect_note(130, 70) is None  # nothing is stretched
    exported = FrameSegmenter(predictor)
    assert exported.aspect_note(66, 60) is None  # within 10 %
    assert "--size 128x64" in exported.aspect_note(1280, 640)
    assert FrameSegmenter(predictor, mode="slide").aspect_note(1280, 640) is None


def test_renderer_blends_the_palette_and_puts_views_side_by_side():
    renderer = Renderer(CITYSCAPES, alpha=0.25, side_by_side=True)
    frame = np.full((4, 6, 3), 100, np.uint8)
    labels = np.full((4, 6), 13, np.uint8)  # car: RGB (0, 0, 142)
    labels[0, 0] = 255  # ignored: black
    view = renderer.view(frame, labels)
    assert view.shape == (4, 12, 3)
    np.testing.assert_array_equal(view[:, :6], frame)
    np.testing.assert_allclose(view[1, 6], [0.75 * 100 + 0.25 * 142, 75, 75], atol=0.5)  # BGR
    np.testing.assert_array_equal(view[0, 6], [75, 75, 75])


def test_legend_names_the_classes_in_view_largest_first_and_the_caption_the_model():
    labels = np.zeros((200, 300), np.uint8)  # road everywhere but:
    labels[:, :120] = 13  # car: 40 %
    labels[:, 120:180] = 10  # sky: 20 %
    labels[0, :3] = 11  # person: 3 pixels, under 1 %: not in the legend
    labels[1, :3] = 255  # ignored: never in the legend
    plain = Renderer(CITYSCAPES)
    annotated = Renderer(CITYSCAPES, legend=True, caption="model-int8.onnx  onnxruntime int8")
    assert annotated.legend_classes(labels) == [0, 13, 10]  # road 40 %, car 40 % less 6 px, sky 20 %
    frame = np.full((200, 300, 3), 100, np.uint8)
    before, after = plain.view(frame, labels), annotated.view(frame, labels)
    changed = np.any(before != after, axis=2)
    rows, cols = np.nonzero(changed)
    # the caption darkens a box in the top left corner and the legend one in the bottom left; the rest is untouched
    assert changed[:5, :5].all() and changed[-5:, :5].all()
    assert not changed[60:140].any() and not changed[:, 200:].any()
    # the legend's swatches are the classes' colours (BGR), one per row
    for train_id in (0, 13, 10):
        colour = np.array(CITYSCAPES.palette[train_id][::-1], np.uint8)
        assert np.all(after[100:, :60] == colour, axis=2).sum() > 20, train_id
    person = np.array(CITYSCAPES.palette[11][::-1], np.uint8)
    assert np.all(after[100:, :60] == person, axis=2).sum() == 0


def test_pictures_too_small_for_text_get_no_legend_or_caption():
    labels = np.full((64, 96), 13, np.uint8)
    frame = np.full((64, 96, 3), 100, np.uint8)
    annotated = Renderer(CITYSCAPES, legend=True, caption="model-fp32.onnx  onnxruntime fp32")
    np.testing.assert_array_equal(annotated.view(frame, labels), Renderer(CITYSCAPES).view(frame, labels))


# -- the command ----------------------------------------------------------------------------------
def test_gkd_infer_writes_an_annotated_video_at_the_input_size_and_rate(run, clip, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out, summary = tmp_path / "annotated.mp4", tmp_path / "summary.json"
    result = runner.invoke(app, ["infer", str(clip), "--model", str(run.export_dir / "model-fp32.onnx"), "--out",
                                 str(out), "--masks", str(tmp_path / "masks"), "--batch", "3", "--json", str(summary),
                                 "--show"])
    assert result.exit_code == 0, result.output
    assert "--show ignored: no display" in result.output and "fps" in result.output
    flat = " ".join(result.output.split())
    assert "128x64 frames are stretched to the model's 64x64 input" in flat
    assert flat.index("are stretched") < flat.index("frames in")  # said before the work, not after
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (128, 64)
    assert len(decode_all(out)) == 10
    assert len(list((tmp_path / "masks").glob("frame_*.png"))) == 10
    report = json.loads(summary.read_text())
    assert report["processed"] == report["decoded"] == report["written"] == 10
    assert report["backend"] == "onnxruntime" and report["fps"] > 0 and report["model_fps"] >= report["fps"]


def test_gkd_infer_default_output_and_errors(run, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["infer", str(clip), "--model", str(run.path), "--max-frames", "2"])
    assert result.exit_code == 0, result.output
    assert len(decode_all(tmp_path / "synth-fog-seg.mp4")) == 2
    from gkd_deploy.cli.app import main

    for args, message in (
        (["infer", str(tmp_path / "nope.mp4"), "--model", str(run.path)], "nope.mp4 not found"),
        (["infer", str(clip), "--model", str(tmp_path / "nope.onnx")], "nope.onnx not found"),
        (["infer", str(clip), "--model", str(run.export_dir / "model-fp32.onnx"), "--size", "128x128"], "exported for 64x64"),
        (["infer", str(clip), "--model", str(run.path), "--out", str(clip)], "is the input itself"),
        (["infer", str(clip), "--model", str(run.path), "--out", str(tmp_path / "x.gif")], "give a video file (.mp4"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 1, args
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, args
    assert not (tmp_path / "x.gif").exists()


def test_gkd_infer_ctrl_c_exits_130_with_a_playable_partial_video(run, clip, tmp_path, monkeypatch):
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

    calls = []
    original = OnnxRuntimePredictor.labels  # what infer calls: the file's labels output

    def interrupted_on_the_fourth_call(self, images):
        calls.append(images.shape[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(OnnxRuntimePredictor, "labels", interrupted_on_the_fourth_call)
    out = tmp_path / "partial.mp4"
    result = runner.invoke(app, ["infer", str(clip), "--model", str(run.export_dir / "model-fp32.onnx"), "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert "interrupted after 3 frames" in result.output
    assert len(decode_all(out)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["partial.mp4"]  # no partial file left behind


def test_one_input_image_gives_one_output_image(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "street.png"
    cv2.imwrite(str(photo), np.full((64, 96, 3), 120, np.uint8))
    result = runner.invoke(app, ["infer", str(photo), "--model", str(run.path)])
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(tmp_path / "street-seg.png"))
    assert written is not None and written.shape == (64, 96, 3)  # a file at the input's size, not a folder
    result = runner.invoke(app, ["infer", str(photo), "--model", str(run.path), "--out", str(tmp_path / "seg.jpg")])
    assert result.exit_code == 0 and cv2.imread(str(tmp_path / "seg.jpg")).shape == (64, 96, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(2):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((64, 96, 3), 60 * index, np.uint8))
    result = runner.invoke(app, ["infer", str(folder), "--model", str(run.path), "--out", str(tmp_path / "one.png")])
    assert result.exit_code == 1 and "is one image, but the input has several frames" in str(result.exception)


def test_gkd_infer_draws_legend_and_caption_unless_told_not_to(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "street.png"
    cv2.imwrite(str(photo), np.full((160, 240, 3), 120, np.uint8))
    for flag, out in (("--legend", "annotated.png"), ("--no-legend", "plain.png")):
        result = runner.invoke(app, ["infer", str(photo), "--model", str(run.path), "--out", out, flag])
        assert result.exit_code == 0, result.output
    annotated, plain = cv2.imread("annotated.png"), cv2.imread("plain.png")
    differs = np.any(annotated != plain, axis=2)
    assert differs[:8, :8].all()  # the caption box in the top left corner
    assert not differs[40:120, 150:].any()  # the scene itself is the same overlay
    # without the legend the picture is the plain blend of the frame and the labels' colours
    predictor = load_predictor(run.path)
    labels = FrameSegmenter(predictor)([cv2.imread(str(photo))])[0]
    expected = Renderer(predictor.info.class_set).view(cv2.imread(str(photo)), labels)
    assert np.abs(plain.astype(int) - expected).max() <= 1
