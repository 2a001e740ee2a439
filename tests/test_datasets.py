"""Data set loaders in their real folder layouts, `name=path` parsing and the registry."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import fixtures_data as fx
from gkd_deploy.data.base import Sample, SegmentationDataset
from gkd_deploy.data.classes import CITYSCAPES, ISPRS
from gkd_deploy.data.datasets.acdc import acdc_domains
from gkd_deploy.data.datasets.bdd100k import BDD100KDataset
from gkd_deploy.data.datasets.cityscapes import CityscapesDataset
from gkd_deploy.data.datasets.folder import FolderDataset, ImageFolderDataset, default_palette
from gkd_deploy.data.datasets.gtav import GTAVDataset
from gkd_deploy.data.imread import image_size, read_label_ids
from gkd_deploy.data.datasets.isprs import PotsdamDataset, VaihingenDataset, tile_windows, window_starts
from gkd_deploy.data.datasets.mapillary import MapillaryDataset, cityscapes_train_id
from gkd_deploy.data.registry import DATASETS, DatasetSpec, build_domains, parse_dataset_arg, parse_dataset_list
from gkd_deploy.data.transforms import train_transform
from gkd_deploy.errors import ConfigError, DataError

STRIPE = fx.W // 3  # label_with([a, b, c]) puts a, b, c at columns 0, STRIPE, 2 * STRIPE


def check_item(item: dict, labeled: bool = True, size: tuple[int, int] = (fx.H, fx.W)) -> None:
    assert item["image"].dtype == torch.uint8 and tuple(item["image"].shape) == (3, *size)
    assert isinstance(item["name"], str)
    if labeled:
        assert item["label"].dtype == torch.int64 and tuple(item["label"].shape) == size
    else:
        assert "label" not in item


# --- Cityscapes ---------------------------------------------------------------------------------


def test_cityscapes_indexes_pairs_and_reads_train_ids(tmp_path):
    root = fx.make_cityscapes(tmp_path / "cs")
    dataset = CityscapesDataset(root, "val")
    assert (dataset.name, dataset.class_set, dataset.labeled, len(dataset)) == ("cityscapes", CITYSCAPES, True, 3)
    assert [s.name for s in dataset.samples] == ["aachen_000000_000000", "aachen_000000_000001", "bochum_000000_000000"]
    for sample in dataset.samples:
        assert sample.label.name == f"{sample.name}_gtFine_labelTrainIds.png"
        assert sample.image.name == f"{sample.name}_leftImg8bit.png"
    item = dataset[1]
    check_item(item)
    assert item["name"] == "aachen_000000_000001"
    assert [int(item["label"][0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [0, 13, 255]
    # The image is RGB, not OpenCV's BGR.
    assert torch.equal(item["image"], torch.from_numpy(fx.rgb(1)).permute(2, 0, 1))


def test_cityscapes_converts_label_ids_when_no_train_ids(tmp_path):
    dataset = CityscapesDataset(fx.make_cityscapes(tmp_path, label_ids=True), "val")
    assert dataset.samples[0].label.name.endswith("_gtFine_labelIds.png")
    label = dataset[0]["label"]
    assert [int(label[0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [0, 13, 255]  # ids 7, 26, 0


def test_cityscapes_missing_split_folder_names_it(tmp_path):
    root = fx.make_cityscapes(tmp_path, split="train")
    with pytest.raises(DataError, match=r"leftImg8bit/val not found; expected the Cityscapes layout"):
        CityscapesDataset(root, "val")
    with pytest.raises(DataError, match="nowhere not found"):
        CityscapesDataset(tmp_path / "nowhere", "val")


def test_images_without_label_are_skipped_and_counted(tmp_path, caplog):
    root = fx.make_cityscapes(tmp_path)
    fx.write_rgb(root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000099_leftImg8bit.png", fx.rgb(9))
    fx.write_rgb(root / "leftImg8bit" / "val" / "zurich" / "zurich_000000_000000_leftImg8bit.png", fx.rgb(9))
    with caplog.at_level(logging.WARNING):
        dataset = CityscapesDataset(root, "val")
    assert len(dataset) == 3
    assert dataset.skipped == {"image without label": 2}
    assert "skipped 2 file(s)" in caplog.text


def test_empty_data_set_is_an_error(tmp_path):
    root = tmp_path / "cs"
    (root / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    (root / "gtFine" / "val").mkdir(parents=True)
    fx.write_rgb(root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000000_leftImg8bit.png", fx.rgb(0))
    with pytest.raises(DataError, match=r"no samples found.*skipped 1 \(image without label\)"):
        CityscapesDataset(root, "val")


# --- GTAV ---------------------------------------------------------------------------------------


def test_gtav_maps_palette_label_ids_to_train_ids(tmp_path):
    dataset = GTAVDataset(fx.make_gtav(tmp_path / "gta"))
    assert len(dataset) == 3 and [s.name for s in dataset.samples] == ["00000", "00001", "00002"]
    item = dataset[0]
    check_item(item)
    # Palette indices are label ids: 26 car -> 13, 7 road -> 0, 0 unlabeled -> 255.
    assert [int(item["label"][0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [13, 0, 255]


def test_gtav_has_no_splits_so_every_split_is_every_image(tmp_path):
    root = fx.make_gtav(tmp_path)
    for split in ("train", "val"):
        (domain,) = build_domains(DatasetSpec("gtav", root), split).values()
        assert len(domain) == 3


def test_palette_png_reads_indices_not_colours(tmp_path):
    indices = fx.label_with([3, 0, 18])
    path = fx.write_palette_png(tmp_path / "p.png", indices, fx.CITYSCAPES_ID_COLOURS)  # 0 and 3 share black
    assert np.array_equal(read_label_ids(path), indices)


def test_small_size_mismatch_resizes_the_label(tmp_path):
    root = fx.make_gtav(tmp_path, frames=1)
    fx.write_palette_png(root / "labels" / "00000.png", fx.label_with([26, 7, 0], fx.H - 1, fx.W - 2), fx.CITYSCAPES_ID_COLOURS)
    dataset = GTAVDataset(root)
    label = dataset[0]["label"]
    assert tuple(label.shape) == (fx.H, fx.W) and dataset.resized_labels == 1
    assert set(label.unique().tolist()) == {13, 0, 255}  # nearest neighbour: no new values


def test_large_size_mismatch_is_an_error(tmp_path):
    root = fx.make_gtav(tmp_path, frames=1)
    label = fx.write_palette_png(root / "labels" / "00000.png", fx.label_with([26, 7, 0], fx.H // 2, fx.W), fx.CITYSCAPES_ID_COLOURS)
    with pytest.raises(DataError, match=f"label {label} is 64x16 but image .* is 64x32"):
        GTAVDataset(root)[0]


def test_unreadable_image_names_the_file(tmp_path):
    root = fx.make_gtav(tmp_path, frames=2)
    broken = root / "images" / "00001.png"
    broken.write_bytes(b"this is not a png at all")
    dataset = GTAVDataset(root)  # indexing reads no pixels
    dataset[0]
    with pytest.raises(DataError, match=f"cannot decode image {broken}"):
        dataset[1]


def test_truncated_label_names_the_file(tmp_path):
    root = fx.make_gtav(tmp_path, frames=1)
    label = root / "labels" / "00000.png"
    label.write_bytes(label.read_bytes()[:60])
    with pytest.raises(DataError, match=f"label {label}"):
        GTAVDataset(root)[0]


# --- BDD100K ------------------------------------------------------------------------------------


def test_bdd100k_reads_train_ids(tmp_path):
    dataset = BDD100KDataset(fx.make_bdd100k(tmp_path), "val")
    assert len(dataset) == 2 and dataset.samples[0].name == "7d2f7975-e0c1c5a0"
    item = dataset[0]
    check_item(item)
    assert [int(item["label"][0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [0, 18, 255]


def test_out_of_set_label_values_name_the_file_and_values(tmp_path):
    root = fx.make_bdd100k(tmp_path, frames=1)
    label = fx.write_gray(root / "labels" / "sem_seg" / "masks" / "val" / "7d2f7975-e0c1c5a0.png", fx.label_with([0, 40, 19]))
    with pytest.raises(DataError, match=rf"label {label} holds unexpected values \[19, 40\]; expected train ids 0-18"):
        BDD100KDataset(root, "val")[0]


def test_bdd100k_train_split_folder_is_required(tmp_path):
    with pytest.raises(DataError, match=r"images/10k/train not found; expected the BDD100K layout"):
        BDD100KDataset(fx.make_bdd100k(tmp_path), "train")


# --- Mapillary ----------------------------------------------------------------------------------


def test_mapillary_maps_classes_by_name(tmp_path):
    dataset = MapillaryDataset(fx.make_mapillary(tmp_path), "val")
    assert len(dataset) == 2
    item = dataset[0]
    check_item(item)
    stripe = fx.W // len(fx.MAPILLARY_NAMES)
    assert [int(item["label"][0, i * stripe]) for i in range(len(fx.MAPILLARY_NAMES))] == fx.MAPILLARY_TRAIN_IDS


def test_mapillary_name_table():
    assert cityscapes_train_id("construction--flat--crosswalk-plain") == 0
    assert cityscapes_train_id("marking--crosswalk-zebra") == 0
    assert cityscapes_train_id("construction--flat--sidewalk") == 1
    assert cityscapes_train_id("human--rider--bicyclist") == 12
    assert cityscapes_train_id("object--support--utility-pole") == 5
    assert cityscapes_train_id("object--traffic-sign--front") == 7
    assert cityscapes_train_id("object--vehicle--caravan") == 255


def test_mapillary_train_split_uses_training_folder(tmp_path):
    assert len(MapillaryDataset(fx.make_mapillary(tmp_path, "training", frames=1), "train")) == 1


def test_mapillary_without_config_is_an_error(tmp_path):
    with pytest.raises(DataError, match="config.json not found"):
        MapillaryDataset(fx.make_mapillary(tmp_path, config=False), "val")


def test_mapillary_ids_beyond_the_config_are_an_error(tmp_path):
    root = fx.make_mapillary(tmp_path, frames=1)
    label = fx.write_palette_png(root / "validation" / "labels" / "__0M5gK8yO0lgTQ.png", fx.label_with([2, 70]), [(0, 0, 0)] * 80)
    with pytest.raises(DataError, match=rf"label {label} holds unexpected values \[70\]"):
        MapillaryDataset(root, "val")[0]


# --- ACDC ---------------------------------------------------------------------------------------


def test_acdc_gives_one_domain_per_condition(tmp_path):
    domains = build_domains(DatasetSpec("acdc", fx.make_acdc(tmp_path, ("fog", "night"), frames=3)), "val")
    assert sorted(domains) == ["acdc-fog", "acdc-night"]
    fog = domains["acdc-fog"]
    assert fog.name == "acdc-fog" and len(fog) == 3
    assert fog.samples[0].name == "GOPR0000_frame_000000"
    item = fog[0]
    check_item(item)
    assert [int(item["label"][0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [10, 2, 255]


def test_acdc_without_the_split_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"rgb_anon/fog/train.*expected the ACDC layout"):
        acdc_domains(fx.make_acdc(tmp_path), "train")


# --- ISPRS --------------------------------------------------------------------------------------


def test_window_positions_cover_the_tile_without_partial_windows():
    assert window_starts(100, 32, 32) == [0, 32, 64, 68]
    assert window_starts(64, 32, 32) == [0, 32]
    assert window_starts(20, 32, 32) == [0]
    assert tile_windows(20, 100, 32, 32)[-1] == (68, 0, 32, 20)  # short side: clipped to the tile


def test_potsdam_windows_split_and_colour_mapping(tmp_path):
    root = fx.make_potsdam(tmp_path, {"2_10": True, "2_13": True, "3_13": False})
    val = PotsdamDataset(root, "val", window=32)
    assert val.skipped == {"tile without label": 1}
    assert len(val) == 3 * 4  # starts 0, 32, 48 down x 0, 32, 64, 68 across
    assert [s.window for s in val.samples[:5]] == [(0, 0, 32, 32), (32, 0, 32, 32), (64, 0, 32, 32), (68, 0, 32, 32), (0, 32, 32, 32)]
    assert {s.image.name for s in val.samples} == {"top_potsdam_2_13_RGB.tif"}
    assert val.samples[3].name == "top_potsdam_2_13_RGB_x68_y0"
    _, expected = fx.isprs_colour_label(80, 100)
    tile = fx.rgb(len("2_13"), 80, 100)
    for index in (0, 3, 11):
        item = val[index]
        check_item(item, size=(32, 32))
        x, y, w, h = val.samples[index].window
        assert np.array_equal(item["label"].numpy(), expected[y : y + h, x : x + w])
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), tile[y : y + h, x : x + w])
    train = PotsdamDataset(root, "train", window=32)
    assert len(train) == 12 and {s.image.name for s in train.samples} == {"top_potsdam_2_10_RGB.tif"}
    assert val.class_set is ISPRS


def test_isprs_unknown_colour_is_an_error(tmp_path):
    root = fx.make_vaihingen(tmp_path, {"2": True})
    label, _ = fx.isprs_colour_label(40, 50)
    label[5, 5] = (12, 200, 7)
    path = fx.write_rgb(root / "gts_for_participants" / "top_mosaic_09cm_area2.tif", label)
    with pytest.raises(DataError, match=rf"label {path} holds colours that are not ISPRS classes: \(12, 200, 7\)"):
        VaihingenDataset(root, "val", window=32)[0]


def test_vaihingen_split_by_area(tmp_path):
    root = fx.make_vaihingen(tmp_path, {"1": True, "2": True, "4": True})
    assert len(VaihingenDataset(root, "train", window=32)) == 4  # area 1: 2 x 2 windows
    val = VaihingenDataset(root, "val")  # default 512 window: one clipped window per tile
    assert [s.window for s in val.samples] == [(0, 0, 50, 40), (0, 0, 50, 40)]
    check_item(val[1], size=(40, 50))


def test_tiff_and_png_sizes_come_from_the_header(tmp_path):
    for name in ("a.tif", "a.png"):
        path = fx.write_rgb(tmp_path / name, fx.rgb(0, 30, 70))
        assert image_size(path) == (30, 70)
    assert image_size(fx.write_rgb(tmp_path / "a.jpg", fx.rgb(0, 30, 70))) == (30, 70)  # decoded instead


def test_tile_cache_is_not_pickled(tmp_path):
    dataset = PotsdamDataset(fx.make_potsdam(tmp_path, {"2_13": True}), "val", window=32)
    dataset[0]
    assert dataset._tile_cache
    assert pickle.loads(pickle.dumps(dataset))._tile_cache == {}


# --- folder and images --------------------------------------------------------------------------


def test_folder_pairs_by_stem_with_cityscapes_classes(tmp_path):
    dataset = FolderDataset(fx.make_folder(tmp_path, frames=2))
    assert len(dataset) == 2 and dataset.class_set is CITYSCAPES
    assert [int(dataset[0]["label"][0, c]) for c in (0, STRIPE, 2 * STRIPE)] == [0, 1, 255]


def test_folder_classes_json(tmp_path):
    dataset = FolderDataset(fx.make_folder(tmp_path, classes={"names": ["bg", "crack"], "palette": [[0, 0, 0], [255, 0, 0]]}))
    assert dataset.class_set.names == ("bg", "crack") and dataset.class_set.palette == ((0, 0, 0), (255, 0, 0))
    dataset[0]


def test_folder_classes_json_without_palette_and_out_of_set_masks(tmp_path):
    root = fx.make_folder(tmp_path, classes={"names": ["bg"]}, values=[0, 1, 255])
    dataset = FolderDataset(root)
    assert dataset.class_set.palette == default_palette(1)
    with pytest.raises(DataError, match=r"holds unexpected values \[1\]; expected train ids 0-0"):
        dataset[0]


def test_folder_bad_classes_json(tmp_path):
    with pytest.raises(DataError, match="classes.json.*palette"):
        FolderDataset(fx.make_folder(tmp_path, classes={"names": ["a", "b"], "palette": [[1, 2, 3]]}))


def test_images_folder_is_recursive_sorted_and_unlabeled(tmp_path):
    root = tmp_path / "proxy"
    fx.write_rgb(root / "b" / "x.JPG", fx.rgb(0))
    fx.write_rgb(root / "a" / "deep" / "y.png", fx.rgb(1))
    fx.write_rgb(root / "z.webp", fx.rgb(2))
    fx.write_rgb(root / ".hidden" / "h.png", fx.rgb(3))
    (root / "notes.txt").write_text("not an image")
    fx.write_gray(root / "masks_ignored.bmp", fx.label_with([1]))  # any image counts, labels are not read
    dataset = ImageFolderDataset(root)
    assert not dataset.labeled and dataset.class_set is CITYSCAPES
    assert [s.name for s in dataset.samples] == ["masks_ignored", "z", "a/deep/y", "b/x"]
    assert dataset.samples[-1].image == root / "b" / "x.JPG" and dataset.samples[-1].label is None
    item = dataset[2]
    check_item(item, labeled=False)
    assert item["name"] == "a/deep/y"
    assert [s.name for s in dataset.samples[1:3]] == ["z", "a/deep/y"]


def test_empty_images_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="images: no samples found"):
        ImageFolderDataset(tmp_path)


def test_dataloader_workers_with_train_transform(tmp_path):
    dataset = GTAVDataset(fx.make_gtav(tmp_path, frames=4))
    dataset.transform = train_transform(crop_size=(16, 24), seed=0)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert [tuple(b["image"].shape) for b in batches] == [(2, 3, 16, 24)] * 2
    assert batches[0]["label"].dtype == torch.int64 and batches[0]["name"] == ["00000", "00001"]


def test_base_class_accepts_custom_samples(tmp_path):
    image = fx.write_rgb(tmp_path / "i.png", fx.rgb(0))
    label = fx.write_gray(tmp_path / "l.png", fx.label_with([3]))
    dataset = SegmentationDataset("custom", CITYSCAPES, [Sample(image, label, "i")])
    assert int(dataset[0]["label"].max()) == 3


# --- name=path parsing and the registry ---------------------------------------------------------


def test_parse_dataset_arg():
    assert parse_dataset_arg("cityscapes=/data/cs") == DatasetSpec("cityscapes", Path("/data/cs"))
    assert parse_dataset_arg(" ACDC = /data/a=b ") == DatasetSpec("acdc", Path("/data/a=b"))
    assert parse_dataset_arg("images=~/proxy").path == Path("~/proxy").expanduser()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/data/cityscapes", "is not NAME=PATH"),
        ("cityscapes", "has no path; write cityscapes=/path/to/cityscapes"),
        ("cityscapes=", "has no path after '='"),
        ("citiscapes=/x", "unknown data set 'citiscapes'.* did you mean cityscapes\\?.*known data sets: cityscapes, gtav"),
        ("gta=/x", "did you mean gtav\\?"),
        ("bdd=/x", "did you mean bdd100k\\?"),
        ("=/x", "unknown data set ''"),
    ],
)
def test_parse_dataset_arg_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_dataset_arg(text)


def test_parse_dataset_list():
    expected = [DatasetSpec("cityscapes", Path("/a")), DatasetSpec("bdd100k", Path("/b,c"))]
    assert parse_dataset_list("cityscapes=/a,bdd100k=/b,c") == expected
    assert parse_dataset_list(["cityscapes=/a", "bdd100k=/b,c"]) == expected
    assert parse_dataset_list([DatasetSpec("acdc", Path("/x"))]) == [DatasetSpec("acdc", Path("/x"))]
    for bad, message in (("", "no data sets given"), ("gtav=/a,gtav=/b", "given twice"), ([3], "must be text"), (7, "must be")):
        with pytest.raises(ConfigError, match=message):
            parse_dataset_list(bad)


def test_build_domains_checks_split_and_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        build_domains(DatasetSpec("cityscapes", tmp_path), "test")
    with pytest.raises(ConfigError, match="did you mean mapillary"):
        build_domains(DatasetSpec("mapilary", tmp_path))


def test_registry_builds_every_data_set(tmp_path):
    roots = {
        "cityscapes": fx.make_cityscapes(tmp_path / "cityscapes"),
        "gtav": fx.make_gtav(tmp_path / "gtav"),
        "bdd100k": fx.make_bdd100k(tmp_path / "bdd100k"),
        "mapillary": fx.make_mapillary(tmp_path / "mapillary"),
        "acdc": fx.make_acdc(tmp_path / "acdc", ("snow",)),
        "potsdam": fx.make_potsdam(tmp_path / "potsdam", {"2_13": True}),
        "vaihingen": fx.make_vaihingen(tmp_path / "vaihingen", {"2": True}),
        "folder": fx.make_folder(tmp_path / "folder"),
        "images": fx.make_folder(tmp_path / "images"),
        "synthia": fx.make_synthia(tmp_path / "synthia"),
        "urbansyn": fx.make_urbansyn(tmp_path / "urbansyn"),
    }
    assert set(roots) == set(DATASETS)
    for name, root in roots.items():
        domains = build_domains(parse_dataset_arg(f"{name}={root}"), "val")
        assert list(domains) == (["acdc-snow"] if name == "acdc" else [name])
        dataset = next(iter(domains.values()))
        assert len(dataset) > 0
        check_item(dataset[0], labeled=name != "images", size=tuple(dataset[0]["image"].shape[1:]))
    assert len(build_domains(DatasetSpec("images", roots["images"]))["images"]) == 4  # images/ and masks/ both count


def test_label_read_does_not_depend_on_cv2_flags(tmp_path):
    # A grey label saved as 3 equal channels is accepted; a colour one is refused.
    root = fx.make_bdd100k(tmp_path, frames=1)
    label_path = root / "labels" / "sem_seg" / "masks" / "val" / "7d2f7975-e0c1c5a0.png"
    grey = fx.label_with([0, 5, 255])
    cv2.imwrite(str(label_path), np.dstack([grey] * 3))
    assert int(BDD100KDataset(root, "val")[0]["label"][0, STRIPE]) == 5
    cv2.imwrite(str(label_path), np.dstack([grey, grey, grey * 0]))
    with pytest.raises(DataError, match="is a colour image"):
        BDD100KDataset(root, "val")[0]
