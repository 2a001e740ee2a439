"""The synthetic driving-scene sources SYNTHIA and UrbanSyn, in their real folder layouts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import fixtures_data as fx
from gkd_deploy.data.classes import CITYSCAPES
from gkd_deploy.data.imread import read_label_red_channel
from gkd_deploy.data.datasets.synthia import SynthiaDataset
from gkd_deploy.data.datasets.urbansyn import UrbanSynDataset
from gkd_deploy.data.registry import DATASETS, build_domains, parse_dataset_arg
from gkd_deploy.errors import DataError

STRIPE = fx.W // 3  # label_with([a, b, c]) puts a, b, c at columns 0, STRIPE, 2 * STRIPE
COLUMNS = (0, STRIPE, 2 * STRIPE)

# SYNTHIA ids 0-22 -> train ids, written out by hand from the RAND-CITYSCAPES class list:
# void, sky, building, road, sidewalk, fence, vegetation, pole, car, traffic sign, pedestrian,
# bicycle, motorcycle, parking slot, road work, traffic light, terrain, rider, truck, bus, train,
# wall, lane marking.
SYNTHIA_EXPECTED = [255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 18, 17, 255, 255, 6, 9, 12, 14, 15, 16, 3, 255]


def stripes(label: torch.Tensor) -> list[int]:
    return [int(label[0, c]) for c in COLUMNS]


def label16(values: list[int]) -> np.ndarray:
    """Like `fx.label_with`, for 16-bit ids: (H, W) uint16 vertical stripes of `values`."""
    columns = np.repeat(np.asarray(values, dtype=np.uint16), fx.W // len(values) + 1)[: fx.W]
    return np.tile(columns, (fx.H, 1))


def one_frame_synthia(root, ids: np.ndarray):
    """A SYNTHIA root with one frame whose raw label is `ids` (any size, 16-bit ids)."""
    height, width = ids.shape
    fx.write_rgb(root / "RGB" / "0000000.png", fx.rgb(0, height, width))
    return fx.write_gray(root / "GT" / "LABELS" / "0000000.png", fx.synthia_raw_label(ids))


# --- SYNTHIA ------------------------------------------------------------------------------------


def test_synthia_maps_every_id_as_the_table_says(tmp_path):
    ids = np.tile(np.arange(23, dtype=np.uint16), (4, 1))
    one_frame_synthia(tmp_path, ids)
    label = SynthiaDataset(tmp_path)[0]["label"]
    assert np.array_equal(label.numpy(), np.tile(np.asarray(SYNTHIA_EXPECTED), (4, 1)))


def test_synthia_item_is_the_documented_dict(tmp_path):
    dataset = SynthiaDataset(fx.make_synthia(tmp_path / "synthia"))
    assert (dataset.name, dataset.class_set, dataset.labeled, len(dataset)) == ("synthia", CITYSCAPES, True, 3)
    assert [s.name for s in dataset.samples] == ["0000000", "0000001", "0000002"]
    assert [s.label.name for s in dataset.samples] == ["0000000.png", "0000001.png", "0000002.png"]
    item = dataset[1]
    assert set(item) == {"image", "label", "name"} and item["name"] == "0000001"
    assert item["image"].dtype == torch.uint8 and tuple(item["image"].shape) == (3, fx.H, fx.W)
    assert torch.equal(item["image"], torch.from_numpy(fx.rgb(1)).permute(2, 0, 1))  # RGB, not BGR
    assert item["label"].dtype == torch.int64 and tuple(item["label"].shape) == (fx.H, fx.W)
    assert stripes(item["label"]) == fx.SYNTHIA_TRAIN_IDS  # 3 road, 8 car, 0 void
    assert set(item["label"].unique().tolist()) == {0, 13, 255}  # the green (instance) channel is not read
    assert SynthiaDataset.eval_size is None and dataset.unknown_id_labels == 0


def test_synthia_train_id_files_win_over_raw_labels(tmp_path):
    root = fx.make_synthia(tmp_path, frames=2, train_id_files=True)
    # The raw files are not even read: break one, and give the other's train-id file other values.
    (root / "GT" / "LABELS" / "0000000.png").write_bytes(b"not a png")
    fx.write_gray(root / "GT" / "LABELS" / "0000001_labelTrainIds.png", fx.label_with([18, 255, 2]))
    fx.write_rgb(root / "RGB" / "0000002.png", fx.rgb(2))
    fx.write_gray(root / "GT" / "LABELS" / "0000002.png", fx.synthia_raw_label(fx.label_with(fx.SYNTHIA_LABEL_IDS)))
    dataset = SynthiaDataset(root)
    assert [s.label.name for s in dataset.samples] == ["0000000_labelTrainIds.png", "0000001_labelTrainIds.png", "0000002.png"]
    assert stripes(dataset[0]["label"]) == fx.SYNTHIA_TRAIN_IDS
    assert stripes(dataset[1]["label"]) == [18, 255, 2]  # as stored: not mapped a second time
    assert stripes(dataset[2]["label"]) == fx.SYNTHIA_TRAIN_IDS  # no converted file: the raw one


def test_synthia_train_id_files_are_checked_as_train_ids(tmp_path):
    root = fx.make_synthia(tmp_path, frames=1, train_id_files=True)
    label = fx.write_gray(root / "GT" / "LABELS" / "0000000_labelTrainIds.png", fx.label_with([0, 21, 255]))
    with pytest.raises(DataError, match=rf"label {label} holds unexpected values \[21\]; expected train ids 0-18"):
        SynthiaDataset(root)[0]


def test_16_bit_ids_decode_exactly(tmp_path):
    ids = np.asarray([[3, 259, 65535, 8, 1000, 21]], dtype=np.uint16)
    path = one_frame_synthia(tmp_path, ids)
    raw = read_label_red_channel(path)
    assert raw.dtype == np.uint16 and np.array_equal(raw, ids)


def test_ids_outside_synthia_are_ignored_counted_and_warned_about(tmp_path, caplog):
    # 259 and 1000 are no SYNTHIA class; 259 would wrongly become road (3) if read as 8 bits.
    path = one_frame_synthia(tmp_path, np.asarray([[3, 259, 65535, 8, 1000, 22]], dtype=np.uint16))
    dataset = SynthiaDataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        label = dataset[0]["label"]
    assert label.tolist() == [[0, 255, 255, 13, 255, 255]]
    assert dataset.unknown_id_labels == 1
    assert f"label {path} holds values that are not SYNTHIA class ids (0-22): [259, 1000, 65535]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dataset[0]
    assert dataset.unknown_id_labels == 2 and "not SYNTHIA class ids" not in caplog.text  # warned once


def test_single_channel_raw_labels_are_the_ids(tmp_path):
    fx.write_rgb(tmp_path / "RGB" / "0000000.png", fx.rgb(0))
    fx.write_gray(tmp_path / "GT" / "LABELS" / "0000000.png", fx.label_with([1, 21, 13]).astype(np.uint16))
    fx.write_rgb(tmp_path / "RGB" / "0000001.png", fx.rgb(1))
    fx.write_gray(tmp_path / "GT" / "LABELS" / "0000001.png", fx.label_with([10, 12, 0]))  # 8-bit
    dataset = SynthiaDataset(tmp_path)
    assert stripes(dataset[0]["label"]) == [10, 3, 255]
    assert stripes(dataset[1]["label"]) == [11, 17, 255]


@pytest.mark.parametrize(
    "values",
    [
        [0, 0, 0],  # all void
        [128, 70, 244],  # red channel of a colour visualisation (road, building, sidewalk)
        [0, 22, 300],  # ignored and unknown ids only
    ],
)
def test_synthia_label_without_any_mapped_class_is_an_error(tmp_path, values):
    path = one_frame_synthia(tmp_path, label16(values))
    dataset = SynthiaDataset(tmp_path)
    with pytest.raises(DataError, match=rf"synthia: label {path} holds unexpected values .*no pixel is one of the 19"):
        dataset[0]
    with pytest.raises(DataError, match="all-255 0000000_labelTrainIds.png"):
        dataset[0]


def test_synthia_corrupt_label_names_the_file(tmp_path):
    root = fx.make_synthia(tmp_path, frames=2)
    broken = root / "GT" / "LABELS" / "0000001.png"
    broken.write_bytes(broken.read_bytes()[:50])
    dataset = SynthiaDataset(root)  # indexing reads no pixels
    dataset[0]
    with pytest.raises(DataError, match=f"cannot decode label {broken}"):
        dataset[1]


def test_synthia_small_size_mismatch_resizes_raw_labels(tmp_path):
    root = fx.make_synthia(tmp_path, frames=1)
    raw = fx.synthia_raw_label(fx.label_with(fx.SYNTHIA_LABEL_IDS, fx.H - 1, fx.W))
    fx.write_gray(root / "GT" / "LABELS" / "0000000.png", raw)
    dataset = SynthiaDataset(root)
    assert tuple(dataset[0]["label"].shape) == (fx.H, fx.W) and dataset.resized_labels == 1


def test_synthia_images_without_label_are_skipped_and_counted(tmp_path, caplog):
    root = fx.make_synthia(tmp_path, frames=2)
    fx.write_rgb(root / "RGB" / "0000099.png", fx.rgb(9))
    fx.write_gray(root / "GT" / "LABELS" / "0000098_labelTrainIds.png", fx.label_with([0]))  # no image: unused
    with caplog.at_level(logging.WARNING):
        dataset = SynthiaDataset(root)
    assert len(dataset) == 2 and dataset.skipped == {"image without label": 1}
    assert "skipped 1 file(s)" in caplog.text


def test_synthia_missing_folders_name_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"synthia: .*nowhere not found; expected the SYNTHIA \(RAND-CITYSCAPES\) layout"):
        SynthiaDataset(tmp_path / "nowhere")
    (tmp_path / "RGB").mkdir()
    with pytest.raises(DataError, match=r"GT/LABELS not found; expected the SYNTHIA \(RAND-CITYSCAPES\) layout RGB/\*.png"):
        SynthiaDataset(tmp_path)
    (tmp_path / "GT" / "LABELS").mkdir(parents=True)
    with pytest.raises(DataError, match=r"synthia: no samples found.*expected the SYNTHIA"):
        SynthiaDataset(tmp_path)


# --- UrbanSyn -----------------------------------------------------------------------------------


@pytest.mark.parametrize("official_names", [True, False])
def test_urbansyn_pairs_both_naming_schemes_and_maps_19_to_ignore(tmp_path, official_names):
    dataset = UrbanSynDataset(fx.make_urbansyn(tmp_path, official_names=official_names))
    prefix = ("rgb_", "ss_") if official_names else ("", "")
    assert (dataset.name, dataset.class_set, len(dataset)) == ("urbansyn", CITYSCAPES, 3)
    assert [s.name for s in dataset.samples] == [f"{prefix[0]}000{n}" for n in (1, 2, 3)]
    assert [s.label.name for s in dataset.samples] == [f"{prefix[1]}000{n}.png" for n in (1, 2, 3)]
    item = dataset[2]
    assert set(item) == {"image", "label", "name"} and item["name"] == f"{prefix[0]}0003"
    assert item["image"].dtype == torch.uint8 and tuple(item["image"].shape) == (3, fx.H, fx.W)
    assert torch.equal(item["image"], torch.from_numpy(fx.rgb(2)).permute(2, 0, 1))
    assert item["label"].dtype == torch.int64 and tuple(item["label"].shape) == (fx.H, fx.W)
    assert stripes(item["label"]) == fx.URBANSYN_TRAIN_IDS
    assert UrbanSynDataset.eval_size is None


def test_urbansyn_train_ids_pass_through_and_19_is_ignored(tmp_path):
    root = fx.make_urbansyn(tmp_path, frames=1)
    values = list(range(20)) + [255]
    width = len(values)
    fx.write_rgb(root / "rgb" / "rgb_0001.png", fx.rgb(0, 2, width))
    fx.write_gray(root / "ss" / "ss_0001.png", np.tile(np.asarray(values, dtype=np.uint8), (2, 1)))
    label = UrbanSynDataset(root)[0]["label"]
    assert label[0].tolist() == list(range(19)) + [255, 255]


def test_urbansyn_identical_name_wins_over_the_prefixed_one(tmp_path):
    root = fx.make_urbansyn(tmp_path, frames=1)
    fx.write_gray(root / "ss" / "rgb_0001.png", fx.label_with([1, 2, 3]))
    dataset = UrbanSynDataset(root)
    assert dataset.samples[0].label.name == "rgb_0001.png" and stripes(dataset[0]["label"]) == [1, 2, 3]


def test_urbansyn_values_beyond_19_are_an_error(tmp_path):
    root = fx.make_urbansyn(tmp_path, frames=1)
    label = fx.write_gray(root / "ss" / "ss_0001.png", fx.label_with([0, 20, 19]))
    with pytest.raises(DataError, match=rf"urbansyn: label {label} holds unexpected values \[20\]"):
        UrbanSynDataset(root)[0]


def test_urbansyn_images_without_label_are_skipped_and_counted(tmp_path):
    root = fx.make_urbansyn(tmp_path, frames=2)
    fx.write_rgb(root / "rgb" / "rgb_0009.png", fx.rgb(9))
    fx.write_rgb(root / "rgb" / "other.png", fx.rgb(9))
    fx.write_gray(root / "ss" / "ss_other.png", fx.label_with([0]))  # "other" has no rgb_ prefix: no pair
    dataset = UrbanSynDataset(root)
    assert len(dataset) == 2 and dataset.skipped == {"image without label": 2}


def test_urbansyn_missing_folders_name_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"urbansyn: .*nowhere not found; expected the UrbanSyn layout"):
        UrbanSynDataset(tmp_path / "nowhere")
    (tmp_path / "rgb").mkdir()
    with pytest.raises(DataError, match=r"ss not found; expected the UrbanSyn layout rgb/\*.png with labels ss/\*.png"):
        UrbanSynDataset(tmp_path)


def test_urbansyn_corrupt_label_names_the_file(tmp_path):
    root = fx.make_urbansyn(tmp_path, frames=1)
    broken = root / "ss" / "ss_0001.png"
    broken.write_bytes(b"")
    with pytest.raises(DataError, match=f"cannot decode label {broken}"):
        UrbanSynDataset(root)[0]


# --- the registry -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synthia", "urbansyn"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_registry_builds_both_for_every_split(tmp_path, name, split):
    root = (fx.make_synthia if name == "synthia" else fx.make_urbansyn)(tmp_path / name)
    assert name in DATASETS
    domains = build_domains(parse_dataset_arg(f"{name}={root}"), split=split)
    assert list(domains) == [name]
    dataset = domains[name]
    assert len(dataset) == 3  # no split folders: every image, whatever the split
    assert dataset[0]["label"].shape == (fx.H, fx.W)
