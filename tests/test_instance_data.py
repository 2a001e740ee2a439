"""Instance-segmentation data: synthetic instance ids, the Cityscapes and COCO instance loaders,
nested labelled / unlabelled splits, and the bad inputs each refuses with one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fixtures_data import (
    TRAIN_ID,
    H,
    W,
    cityscapes_instance_ids,
    file_contents,
    make_cityscapes_instances,
    rgb,
    rle_counts,
    train_ids_of,
    write_gray,
    write_rgb,
)
from gkd_deploy.data.classes import CITYSCAPES_THING_NAMES, IGNORE_INDEX
from gkd_deploy.data.instances import (
    DEFAULT_LABEL_FRACTION,
    LABEL_FRACTIONS,
    CityscapesInstanceDataset,
    CocoInstanceDataset,
    InstanceTarget,
    split_dataset,
    split_indices,
)
from gkd_deploy.data.synthetic import render_scene, render_scene_instances, write_synthetic
from gkd_deploy.data.synthetic.instances import instance_id_map
from gkd_deploy.data.synthetic.layout import sample_layout
from gkd_deploy.data.synthetic.raster import Canvas
from gkd_deploy.data.synthetic.scene import camera_for
from gkd_deploy.errors import ConfigError, DataError, GKDError

SMALL = (256, 128)
THING_TRAIN_IDS = [TRAIN_ID[name] for name in CITYSCAPES_THING_NAMES]


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, GKDError) and "\n" not in message
    return message


# -- the generator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    """The same small synthetic run written with 1 and with 2 worker processes."""
    root = tmp_path_factory.mktemp("synthetic")
    for workers in (1, 2):
        write_synthetic(root / str(workers), train=2, val=1, target=1, size=SMALL, seed=11, workers=workers)
    return root / "1", root / "2"


def _instance_files(root: Path) -> list[tuple[Path, Path]]:
    """(instanceIds, labelTrainIds) pairs of both layouts."""
    cityscapes = [(p, p.with_name(p.name.replace("_gtFine_instanceIds", "_gtFine_labelTrainIds")))
                  for p in sorted(root.glob("cityscapes-synth/gtFine/*/*/*_gtFine_instanceIds.png"))]
    acdc = [(p, p.with_name(p.name.replace("_gt_instanceIds", "_gt_labelTrainIds")))
            for p in sorted(root.glob("acdc-synth/gt/*/val/*/*_gt_instanceIds.png"))]
    assert len(cityscapes) == 3 and len(acdc) == 4
    return cityscapes + acdc


def test_generator_writes_instance_ids_that_agree_with_the_labels(written):
    objects = 0
    for instance_path, label_path in _instance_files(written[0]):
        ids = cv2.imread(str(instance_path), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16 and ids.shape == label.shape == (128, 256)
        # Same pixels: every value maps back to the train id of the label there.
        assert np.array_equal(train_ids_of(ids), label)
        # Every thing pixel belongs to an object (the generator draws no crowds); stuff never does.
        thing = np.isin(label, THING_TRAIN_IDS)
        assert np.array_equal(ids >= 1000, thing)
        objects += len(np.unique(ids[thing]))
        assert (ids[label == IGNORE_INDEX] == 0).all()
    assert objects >= 10


def test_generator_output_is_byte_identical_for_one_and_two_workers(written):
    one, two = (file_contents(root) for root in written)
    assert one.keys() == two.keys()
    assert sum(name.endswith("_instanceIds.png") for name in one) == 7
    assert all(one[name] == two[name] for name in one)


def test_the_instance_map_comes_with_the_same_image_and_label():
    image, label = render_scene(5, SMALL, "night")
    image_again, label_again, ids = render_scene_instances(5, SMALL, "night")
    assert np.array_equal(image, image_again) and np.array_equal(label, label_again)
    assert np.array_equal(train_ids_of(ids), label)


def test_the_object_map_follows_the_label_through_occlusion():
    canvas = Canvas(camera_for(sample_layout(0), (64, 32)))
    canvas.label[:] = TRAIN_ID["road"]

    def rect(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)

    for owner, box, depth, name in ((1, (4, 4, 30, 20), 10.0, "car"), (2, (20, 8, 50, 28), 5.0, "car"),
                                    (3, (40, 2, 60, 12), 20.0, "person"), (4, (0, 26, 64, 32), 1.0, "sidewalk")):
        canvas.owner = owner
        canvas.draw(polys=[rect(*box)], depth=depth, colour=(1, 1, 1), label=TRAIN_ID[name])
    canvas.owner = 5
    canvas.draw(polys=[rect(0, 0, 64, 32)], depth=5.0, colour=(0, 0, 0), mode="multiply")  # a decal: no label
    objects, label = canvas.objects, canvas.label
    assert objects[10, 10] == 1 and objects[15, 25] == 2  # the nearer car takes the overlap
    assert objects[10, 45] == 2 and objects[4, 55] == 3  # the far person only where nothing nearer is
    assert (objects[27:] == 4).all() and objects[0, 0] == 0  # stuff drawn over things owns its pixels
    ids = instance_id_map(label, objects)
    assert ids[10, 10] == 26000 and ids[15, 25] == 26001 and ids[4, 55] == 24000
    assert ids[27, 0] == 8 and ids[0, 0] == 7  # sidewalk and road: plain label ids


def test_one_object_of_two_classes_is_two_instances():
    """A rider on a bicycle: one layout item, a rider and a bicycle instance."""
    label = np.full((4, 6), TRAIN_ID["road"], np.uint8)
    objects = np.zeros((4, 6), np.int32)
    label[:2, :3], label[2:, :3], objects[:, :3] = TRAIN_ID["rider"], TRAIN_ID["bicycle"], 7
    label[:, 4], objects[:, 4] = TRAIN_ID["rider"], 9
    label[:, 5], objects[:, 5] = TRAIN_ID["car"], 0  # no object: a crowd, the plain label id
    ids = instance_id_map(label, objects)
    assert ids[0, 0] == 25000 and ids[3, 0] == 33000 and ids[0, 4] == 25001 and ids[0, 5] == 26
    assert ids[0, 3] == 7


# -- the Cityscapes instance loader -------------------------------------------------------------


def test_cityscapes_instances_give_masks_classes_crowd_and_the_label(tmp_path):
    root = make_cityscapes_instances(tmp_path / "cs", frames=2)
    dataset = CityscapesInstanceDataset(root, "train")
    assert len(dataset) == 2 and dataset.class_names == CITYSCAPES_THING_NAMES
    sample = dataset[1]
    ids = cityscapes_instance_ids()
    assert sample.name == "aachen_000000_000001" and np.array_equal(sample.image, rgb(1))
    assert np.array_equal(sample.semantic, train_ids_of(ids))
    target = sample.target
    # Person 0, car 0, car 1, bicycle 0 in order of value; the caravan (29000) is no instance.
    assert target.classes.tolist() == [0, 2, 2, 7]
    assert target.masks.shape == (4, H, W) and target.masks.dtype == np.bool_
    for mask, value in zip(target.masks, (24000, 26000, 26001, 33000)):
        assert np.array_equal(mask, ids == value)
    assert np.array_equal(target.crowd, ids == 26)  # the car group
    assert not (target.masks.any(axis=0) & target.crowd).any()


def test_cityscapes_instances_read_the_generated_data(written):
    dataset = CityscapesInstanceDataset(written[0] / "cityscapes-synth", "train")
    assert len(dataset) == 2
    for index in range(len(dataset)):
        sample = dataset[index]
        assert len(sample.target) > 0
        # Each class index is the train id of its pixels, minus 11 (person).
        for mask, cls in zip(sample.target.masks, sample.target.classes):
            assert set(np.unique(sample.semantic[mask]).tolist()) == {THING_TRAIN_IDS[cls]}


def test_images_without_instance_ids_are_skipped_and_counted(tmp_path):
    root = make_cityscapes_instances(tmp_path / "cs", frames=3)
    (root / "gtFine/train/aachen/aachen_000000_000001_gtFine_instanceIds.png").unlink()
    dataset = CityscapesInstanceDataset(root, "train")
    assert dataset.names == ["aachen_000000_000000", "aachen_000000_000002"]
    assert dataset.skipped == {"image without instance ids": 1}
    for path in (root / "gtFine/train/aachen").glob("*_instanceIds.png"):
        path.unlink()
    with pytest.raises(DataError, match="no samples found.*skipped 3 \\(image without instance ids\\)"):
        CityscapesInstanceDataset(root, "train")


def test_instance_ids_that_disagree_with_the_label_are_refused(tmp_path):
    ids = cityscapes_instance_ids()
    root = make_cityscapes_instances(tmp_path / "cs", frames=1)
    wrong = ids.copy()
    wrong[14, 6] = 27000  # a truck where the label says car
    write_gray(root / "gtFine/train/aachen/aachen_000000_000000_gtFine_instanceIds.png", wrong)
    dataset = CityscapesInstanceDataset(root, "train")
    with pytest.raises(DataError) as error:
        dataset[0]
    message = _one_line(error)
    assert "aachen_000000_000000_gtFine_instanceIds.png disagree with label" in message
    assert "1 pixel(s), first at x=6, y=14: value 27000 is label id 27 (train id 14), the label says train id 13" in message
    assert "regenerate" in message


@pytest.mark.parametrize("value", [34, 40001])
def test_instance_ids_with_an_unknown_label_id_are_refused(tmp_path, value):
    ids = cityscapes_instance_ids()
    ids[0, 0] = value
    root = make_cityscapes_instances(tmp_path / "cs", frames=1, instances=ids)
    with pytest.raises(DataError) as error:
        CityscapesInstanceDataset(root, "train")[0]
    message = _one_line(error)
    assert f"instanceIds.png hold value(s) [{value}] whose label id Cityscapes does not define (0-33)" in message


def test_instance_ids_of_another_size_are_refused(tmp_path):
    root = make_cityscapes_instances(tmp_path / "cs", frames=1)
    write_gray(root / "gtFine/train/aachen/aachen_000000_000000_gtFine_instanceIds.png", np.zeros((16, 32), np.uint16))
    with pytest.raises(DataError, match="are 32x16 but label .* is 64x32"):
        CityscapesInstanceDataset(root, "train")[0]


# -- the COCO instance loader -------------------------------------------------------------------


def _coco(root: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Three images listed (one missing on disk), categories 1 person, 3 car, 7 truck; a polygon,
    an uncompressed RLE, a compressed RLE and a crowd RLE. Returns (json, images, masks)."""
    images = root / "images"
    write_rgb(images / "b.png", rgb(1))
    write_rgb(images / "sub" / "a.png", rgb(2))
    blob = np.zeros((H, W), bool)
    blob[3:9, 40:60] = True
    blob[20:30, 50:52] = True
    truck = np.zeros((H, W), bool)
    truck[10:20, 2:30] = True
    crowd = np.zeros((H, W), bool)
    crowd[25:32, 0:10] = True
    compressed = mask_utils.encode(np.asfortranarray(truck.astype(np.uint8)))
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd.astype(np.uint8)))
    data = {
        "images": [{"id": 5, "file_name": "sub/a.png", "height": H, "width": W},
                   {"id": 2, "file_name": "b.png", "height": H, "width": W},
                   {"id": 9, "file_name": "missing.png", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "truck"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 12, "image_id": 5, "category_id": 3, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": rle_counts(blob)}},
            {"id": 11, "image_id": 5, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10.0, 5.0, 20.0, 5.0, 20.0, 15.0, 10.0, 15.0]]},
            {"id": 13, "image_id": 5, "category_id": 7, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": compressed["counts"].decode("ascii")}},
            {"id": 14, "image_id": 5, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": crowd_rle["counts"].decode("ascii")}},
        ],
    }
    path = root / "instances_val.json"
    path.write_text(json.dumps(data))
    return path, images, {"blob": blob, "truck": truck, "crowd": crowd}


def test_coco_instances_decode_polygons_and_rle(tmp_path):
    path, images, masks = _coco(tmp_path)
    dataset = CocoInstanceDataset(path, images)
    assert dataset.category_ids == (1, 3, 7) and dataset.class_names == ("person", "car", "truck")
    assert dataset.names == ["b", "sub/a"]  # sorted by file name; missing.png skipped and counted
    assert dataset.skipped == {"image in the annotations but not in the folder": 1}
    empty = dataset[0]
    assert len(empty.target) == 0 and not empty.target.crowd.any() and empty.semantic is None
    sample = dataset[1]
    assert np.array_equal(sample.image, rgb(2))
    target = sample.target
    assert target.classes.tolist() == [0, 1, 2]  # annotations 11 (person), 12 (car), 13 (truck)
    polygon = target.masks[0]
    assert polygon[6:15, 11:20].all() and 100 <= polygon.sum() <= 121
    assert not polygon[:4].any() and not polygon[17:].any() and not polygon[:, :9].any() and not polygon[:, 22:].any()
    assert np.array_equal(target.masks[1], masks["blob"])
    assert np.array_equal(target.masks[2], masks["truck"])
    assert np.array_equal(target.crowd, masks["crowd"])


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_coco_annotation_of_an_unknown_category_is_refused(tmp_path):
    path, images, _ = _coco(tmp_path)
    _rewrite(path, lambda data: data["annotations"][0].update(category_id=4))
    with pytest.raises(DataError) as error:
        CocoInstanceDataset(path, images)
    assert "annotation 12 in" in _one_line(error) and "category_id 4, which its categories list does not define" in str(error.value)


@pytest.mark.parametrize("segmentation, match", [
    ([[1.0, 2.0, 3.0, 4.0]], "a polygon must be a list of 3 or more x, y pairs"),
    ({"size": [H, W + 1], "counts": [H * (W + 1)]}, "its RLE size"),
    ("1 2 3", "segmentation must be a list of polygons or an RLE"),
])
def test_coco_bad_segmentations_are_refused(tmp_path, segmentation, match):
    path, images, _ = _coco(tmp_path)
    _rewrite(path, lambda data: data["annotations"][1].update(segmentation=segmentation))
    dataset = CocoInstanceDataset(path, images)
    with pytest.raises(DataError, match=match) as error:
        dataset[1]
    assert "annotation 11 in" in _one_line(error)


def test_coco_files_that_are_not_coco_are_refused(tmp_path):
    path, images, _ = _coco(tmp_path)
    with pytest.raises(DataError, match="annotation file .*nothing.json not found"):
        CocoInstanceDataset(tmp_path / "nothing.json", images)
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read .* as JSON"):
        CocoInstanceDataset(path, images)
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match="no list of objects under 'categories'"):
        CocoInstanceDataset(path, images)


# -- labelled / unlabelled splits ---------------------------------------------------------------


def test_splits_are_nested_deterministic_and_cover_every_image():
    assert LABEL_FRACTIONS == (0.05, 0.10, 0.30) and DEFAULT_LABEL_FRACTION == 0.10
    for seed in range(3):
        splits = [split_indices(200, fraction, seed) for fraction in LABEL_FRACTIONS]
        assert [len(s.labelled) for s in splits] == [10, 20, 60]
        small, default, large = (set(s.labelled.tolist()) for s in splits)
        assert small < default < large
        for split in splits:
            assert np.array_equal(np.sort(np.concatenate([split.labelled, split.unlabelled])), np.arange(200))
            assert np.array_equal(split.labelled, np.sort(split.labelled))
        again = split_indices(200, seed=seed)
        assert np.array_equal(again.labelled, splits[1].labelled)  # default 10 %, same seed, same images
    assert not np.array_equal(split_indices(200, 0.1, 0).labelled, split_indices(200, 0.1, 1).labelled)
    assert len(split_indices(7, 0.05).labelled) == 1  # at least one labelled image


def test_the_unlabelled_pool_reads_images_only(tmp_path):
    root = make_cityscapes_instances(tmp_path / "cs", frames=5)
    dataset = CityscapesInstanceDataset(root, "train")
    labelled, unlabelled = split_dataset(dataset, 0.3, seed=0)
    assert len(labelled) == 2 and len(unlabelled) == 3
    assert set(labelled.indices.tolist()).isdisjoint(unlabelled.indices.tolist())
    assert isinstance(labelled[0].target, InstanceTarget) and labelled[0].semantic is not None
    for path in (root / "gtFine").rglob("*.png"):
        path.unlink()  # the pool never touches the annotations
    for index in range(len(unlabelled)):
        sample = unlabelled[index]
        assert sample.target is None and sample.semantic is None and not sample.labelled
        assert sample.name == dataset.names[unlabelled.indices[index]]


@pytest.mark.parametrize("fraction", [0, 0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_label_fractions_outside_zero_one_are_refused(fraction):
    with pytest.raises(ConfigError) as error:
        split_indices(100, fraction)
    assert "label fraction must be a number between 0 and 1" in _one_line(error)


def test_an_empty_unlabelled_pool_is_refused(tmp_path):
    with pytest.raises(DataError) as error:
        split_indices(1, 0.1)
    assert "the unlabelled pool is empty: a label fraction of 0.1 of 1 image(s) labels 1" in _one_line(error)
    dataset = CityscapesInstanceDataset(make_cityscapes_instances(tmp_path / "cs", frames=3), "train")
    with pytest.raises(DataError, match="the unlabelled pool is empty"):
        split_dataset(dataset, 0.9)
