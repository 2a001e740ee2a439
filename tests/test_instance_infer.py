"""`gkd infer` with an instance segmenter: which instances are kept, how they are drawn, what
`--labels` writes, and the command end to end on images, a video and (without torch) an ONNX file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.data.classes import CITYSCAPES_THINGS, ClassSet
from gkd_deploy.data.imread import read_label_ids
from gkd_deploy.data.instances.cityscapes import decode_instance_ids
from gkd_deploy.errors import ConfigError
from gkd_deploy.infer import InferSettings
from gkd_deploy.infer.instances import (FrameInstances, InstanceFrameSegmenter, instance_id_map, instance_label_ids,
                                        instance_records)
from gkd_deploy.infer.render_instances import InstanceRenderer, instance_colour
from gkd_deploy.infer.sinks import InstanceLabelSink
from gkd_deploy.infer.sources import Frame
from gkd_deploy.runtime.loader import load_predictor
from tests.fixtures_models import INSTANCE_SIZE, tiny_instance_model
from tests.test_edge_install import probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

runner = CliRunner()
GREY = 100
CAR, PERSON, BUS = (CITYSCAPES_THINGS.names.index(name) for name in ("car", "person", "bus"))


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, fp32 .onnx at 64 x 64) of a random tiny instance segmenter."""
    return tiny_instance_model(tmp_path_factory.mktemp("instance-model"))


def rectangles(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(N, height, width) bool masks, one filled [left, top, right, bottom) rectangle each."""
    masks = np.zeros((len(boxes), height, width), bool)
    for mask, (left, top, right, bottom) in zip(masks, boxes):
        mask[top:bottom, left:right] = True
    return masks


def three_instances(height: int = 192, width: int = 256) -> FrameInstances:
    """A car (0.9) and a person (0.6) side by side, a bus (0.3) above them, kept at threshold 0.5;
    given out of score order."""
    masks = rectangles(height, width, [(150, 100, 230, 160), (20, 100, 100, 160), (150, 20, 230, 60)])
    return FrameInstances.above(masks, np.array([PERSON, CAR, BUS]), np.array([0.6, 0.9, 0.3], np.float32), 0.5)


def blend(colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """What a grey pixel becomes under `colour` at `alpha` (OpenCV's rounding)."""
    frame, layer = np.full((1, 1, 3), GREY, np.uint8), np.array([[colour]], np.uint8)
    return cv2.addWeighted(frame, 1.0 - alpha, layer, alpha, 0.0)[0, 0]


# -- which instances, at which size ----------------------------------------------------------------
def test_instances_below_the_threshold_are_dropped_and_the_rest_come_best_first():
    instances = three_instances()
    assert len(instances) == 2
    assert instances.classes.tolist() == [CAR, PERSON] and instances.scores.tolist() == pytest.approx([0.9, 0.6])
    assert instances.boxes().tolist() == [[20, 100, 100, 160], [150, 100, 230, 160]]
    # At a frame of half the size (nearest neighbour: every other pixel); a mask left empty is dropped.
    speck = rectangles(192, 256, [(1, 1, 2, 2)])
    joined = FrameInstances(np.concatenate([instances.masks, speck]), np.array([CAR, PERSON, BUS]),
                            np.array([0.9, 0.6, 0.55], np.float32))
    resized = joined.at_size(96, 128)
    assert len(resized) == 2 and resized.masks.shape == (2, 96, 128)
    assert resized.boxes().tolist() == [[10, 50, 50, 80], [75, 50, 115, 80]]
    # A frame where nothing clears the threshold, at the model's own size or another.
    nothing = FrameInstances(np.zeros((0, 192, 256), bool), np.zeros(0, np.int64), np.zeros(0, np.float32))
    assert [len(nothing.at_size(*size)) for size in ((192, 256), (96, 128))] == [0, 0]
    assert nothing.at_size(192, 256).masks.shape == (0, 192, 256)


def test_the_segmenter_keeps_what_the_model_scores_above_the_threshold_at_the_frames_size(model):
    predictor = load_predictor(model[1], "cpu")
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    resized = cv2.cvtColor(cv2.resize(frame, (INSTANCE_SIZE, INSTANCE_SIZE), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB)
    _, classes, scores = predictor(resized.transpose(2, 0, 1)[None].astype(np.float32))
    threshold = float(np.median(scores[0]))
    (instances,) = InstanceFrameSegmenter(predictor, score_threshold=threshold)([frame])
    order = np.argsort(-scores[0], kind="stable")
    kept = order[scores[0][order] >= threshold]
    assert 0 < len(instances) <= len(kept) < scores.shape[1]
    assert instances.masks.shape[1:] == (96, 128)
    np.testing.assert_array_equal(instances.scores, scores[0][kept][:len(instances)])
    np.testing.assert_array_equal(instances.classes, classes[0][kept][:len(instances)])


def test_an_instance_model_is_refused_sliding_windows_and_a_threshold_outside_0_to_1(model):
    predictor = load_predictor(model[1], "cpu")
    with pytest.raises(ConfigError, match="use --mode resize"):
        InstanceFrameSegmenter(predictor, mode="slide")
    with pytest.raises(ConfigError, match="--score-threshold must be between 0 and 1"):
        InferSettings(score_threshold=1.5)


# -- drawing -------------------------------------------------------------------------------------
def test_each_instance_is_blended_in_its_own_colour_outlined_and_tagged():
    instances = three_instances()
    frame = np.full((192, 256, 3), GREY, np.uint8)
    view = InstanceRenderer(CITYSCAPES_THINGS, alpha=0.5).view(frame, instances)
    car, person = instance_colour(0), instance_colour(1)
    np.testing.assert_array_equal(view[130, 60], blend(car))  # inside the car, away from its edge and tag
    np.testing.assert_array_equal(view[130, 190], blend(person))
    assert tuple(view[159, 60]) == car and tuple(view[130, 20]) == car  # the outline, on the mask's edge
    assert tuple(view[159, 190]) == person
    assert (view[20:60, 150:230] == GREY).all()  # the bus scores 0.3: not drawn
    assert (view[175:, :] == GREY).all() and (view[100:160, 110:140] == GREY).all()  # no instance there
    # The tags "car 0.90" / "person 0.60" sit on the boxes' top-left corners, in the instances' colours.
    renderer = InstanceRenderer(CITYSCAPES_THINGS)
    assert [renderer.tag(instances, i) for i in range(2)] == ["car 0.90", "person 0.60"]
    for (left, top), colour in (((20, 100), car), ((150, 100), person)):
        tag = view[top - 12:top, left:left + 40]
        assert (tag == colour).all(axis=-1).mean() > 0.3
        assert (np.abs(tag.astype(int) - colour).sum(axis=-1) > 200).any()  # the text's ink
    assert (view[80:100, 110:140] == GREY).all()  # tags stay near their boxes


def test_the_better_instance_is_drawn_on_top_and_colours_are_distinct_per_index():
    masks = rectangles(96, 128, [(10, 10, 60, 60), (40, 40, 100, 90)])
    instances = FrameInstances(masks, np.array([CAR, CAR]), np.array([0.9, 0.8], np.float32))
    colours = InstanceRenderer(CITYSCAPES_THINGS).mask(instances)
    assert tuple(colours[50, 50]) == instance_colour(0) and tuple(colours[80, 80]) == instance_colour(1)
    assert (colours[0, 0] == 0).all()
    palette = [instance_colour(i) for i in range(40)]
    assert len(set(palette)) == 40 and palette == [instance_colour(i) for i in range(40)]
    nearest = min(np.abs(np.subtract(palette[i], palette[i + 1])).sum() for i in range(39))
    assert nearest > 60  # neighbours in the index are far apart in colour


def test_small_pictures_get_no_tags():
    instances = three_instances(64, 96)
    frame = np.full((64, 96, 3), GREY, np.uint8)
    renderer = InstanceRenderer(CITYSCAPES_THINGS)
    np.testing.assert_array_equal(renderer.view(frame, instances), renderer.overlay(frame, instances))


# -- what --labels writes -------------------------------------------------------------------------
def test_labels_are_cityscapes_instance_ids_and_a_json_of_the_instances(tmp_path):
    instances = three_instances()
    ids = instance_id_map(instances, instance_label_ids(CITYSCAPES_THINGS))
    assert ids.dtype == np.uint16
    assert set(np.unique(ids).tolist()) == {0, 26000, 24001}  # car = label id 26, person = 24
    sink = InstanceLabelSink(tmp_path / "labels", CITYSCAPES_THINGS)
    sink.write(Frame(3, "frame_000003", np.zeros((192, 256, 3), np.uint8)), instances, None)
    assert sink.close() == [tmp_path / "labels"]
    # The PNG reads back through the Cityscapes loader as the instances that were drawn.
    target = decode_instance_ids(read_label_ids(tmp_path / "labels" / "frame_000003.png"), tmp_path)
    assert sorted(target.classes.tolist()) == sorted(instances.classes.tolist())
    np.testing.assert_array_equal(target.masks[target.classes.tolist().index(CAR)], instances.masks[0])
    record = json.loads((tmp_path / "labels" / "frame_000003.json").read_text())
    assert record["frame"] == "frame_000003" and record["index"] == 3 and (record["height"], record["width"]) == (192, 256)
    assert record["instances"][0] == {"index": 0, "id": 26000, "class": "car", "class_index": CAR, "score": 0.9,
                                      "box": [20, 100, 100, 160], "area": 80 * 60}
    assert [r["class"] for r in record["instances"]] == ["car", "person"]


def test_other_class_sets_number_from_one_and_too_many_classes_are_refused(tmp_path):
    few = ClassSet("shapes", ("square", "disc"), ((0, 0, 0), (1, 1, 1)))
    assert instance_label_ids(few) == (1, 2)
    masks = rectangles(8, 8, [(0, 0, 4, 4)])
    records = instance_records(FrameInstances(masks, np.array([1]), np.array([0.7], np.float32)), few, (1, 2))
    assert records[0]["id"] == 2000 and records[0]["class"] == "disc"
    many = ClassSet("many", tuple(f"c{i}" for i in range(80)), tuple((i, i, i) for i in range(80)))
    with pytest.raises(ConfigError, match="hold 64 classes; this model has 80"):
        instance_label_ids(many)
    with pytest.raises(ConfigError, match="leave out --labels"):  # before the first frame, and nothing written
        InstanceLabelSink(tmp_path / "labels", many)
    assert not (tmp_path / "labels").exists()


# -- the command ---------------------------------------------------------------------------------
def write_images(folder: Path, count: int = 3) -> list[np.ndarray]:
    """`count` random 80 x 128 images (too low for tags: every pixel is the frame's or a mask's)."""
    folder.mkdir()
    generator = np.random.default_rng(1)
    images = [generator.integers(0, 255, (80, 128, 3), np.uint8) for _ in range(count)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"street_{i}.png"), image)
    return images


def test_the_command_on_an_image_folder_writes_overlays_masks_and_labels(model, tmp_path):
    images = write_images(tmp_path / "images")
    predictor = load_predictor(model[1], "cpu")
    expected = InstanceFrameSegmenter(predictor, score_threshold=0.07)(images)
    result = runner.invoke(app, ["infer", str(tmp_path / "images"), "--model", str(model[1]), "--out",
                                 str(tmp_path / "seg"), "--masks", str(tmp_path / "masks"), "--labels",
                                 str(tmp_path / "labels"), "--score-threshold", "0.07", "--no-legend", "--device",
                                 "cpu", "--json", str(tmp_path / "infer.json")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output and "3 frames" in result.output
    summary = json.loads((tmp_path / "infer.json").read_text())
    assert summary["task"] == "instance" and summary["score_threshold"] == 0.07 and summary["processed"] == 3
    for i, (image, instances) in enumerate(zip(images, expected)):
        name = f"street_{i}"
        view = cv2.imread(str(tmp_path / "seg" / f"{name}.png"))
        assert view.shape == image.shape
        drawn = instances.masks.any(axis=0)
        assert (view[~drawn] == image[~drawn]).all() and (view[drawn] != image[drawn]).any(axis=-1).mean() > 0.5
        colours = cv2.imread(str(tmp_path / "masks" / f"{name}.png"))
        np.testing.assert_array_equal(colours, InstanceRenderer(predictor.info.class_set).mask(instances))
        record = json.loads((tmp_path / "labels" / f"{name}.json").read_text())
        assert [r["score"] for r in record["instances"]] == [round(float(s), 4) for s in instances.scores]
        ids = cv2.imread(str(tmp_path / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16 and ids.shape == image.shape[:2]
        assert set(np.unique(ids).tolist()) <= {0} | {r["id"] for r in record["instances"]}
        assert record["instances"][0]["id"] in ids  # the best instance is never hidden
    assert sum(len(instances) for instances in expected) > 0


def test_the_command_on_a_video_through_the_checkpoint(model, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for i in range(6):
        writer.write(np.full((96, 128, 3), 40 * i, np.uint8))
    writer.release()
    result = runner.invoke(app, ["infer", str(clip), "--model", str(model[0]), "--out", str(tmp_path / "seg.mp4"),
                                 "--score-threshold", "0", "--batch", "4", "--device", "cpu", "--json",
                                 str(tmp_path / "infer.json")])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output
    summary = json.loads((tmp_path / "infer.json").read_text())
    assert summary["processed"] == summary["written"] == 6 and summary["backend"] == "torch"
    capture = cv2.VideoCapture(str(tmp_path / "seg.mp4"))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert len(frames) == 6 and frames[0].shape == (96, 128, 3)
    assert np.abs(frames[3].astype(int) - 120).mean() > 10  # instances drawn over the flat grey frame


def test_infer_on_an_instance_onnx_file_imports_no_torch(model, tmp_path):
    write_images(tmp_path / "images", count=2)
    result = probe(["infer", str(tmp_path / "images"), "--model", str(model[1]), "--out", str(tmp_path / "seg"),
                    "--labels", str(tmp_path / "labels"), "--score-threshold", "0.05"], tmp_path)
    assert result == {"code": 0, "heavy": []}
    assert len(list((tmp_path / "seg").glob("*.png"))) == 2 and len(list((tmp_path / "labels").glob("*.json"))) == 2
