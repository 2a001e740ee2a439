"""Tiny data sets in the real folder layouts, written with numpy + OpenCV for the loader tests.

Images are 32x64 (H x W) random RGB; each writer returns what the test needs to check the result.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from gkd_deploy.data.classes import CITYSCAPES, ISPRS

H, W = 32, 64
# Cityscapes class name -> train id.
TRAIN_ID = {name: i for i, name in enumerate(CITYSCAPES.names)}


def rgb(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def file_contents(root: Path) -> dict[str, bytes]:
    """Relative path -> contents of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Write (H, W, 3) RGB; lossless formats keep pixels exact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def write_gray(path: Path, label: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), label):
        raise OSError(f"could not write {path}")
    return path


def write_palette_png(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> Path:
    """An 8-bit palette ("P" mode) PNG, as GTAV and Mapillary ship their labels; OpenCV cannot write these."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    height, width = indices.shape
    rows = b"".join(b"\x00" + indices[r].astype(np.uint8).tobytes() for r in range(height))
    entries = np.zeros((256, 3), dtype=np.uint8)
    entries[: len(palette)] = palette
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", entries.tobytes())
        + chunk(b"tRNS", b"\xff" * 4)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def label_with(values: list[int], height: int = H, width: int = W) -> np.ndarray:
    """A label whose columns cycle through `values` in equal vertical stripes; pixel (0, i*W/len) is values[i]."""
    stripe = width // len(values)
    columns = np.repeat(np.asarray(values, dtype=np.uint8), stripe)
    columns = np.concatenate([columns, np.full(width - len(columns), values[-1], np.uint8)])
    return np.tile(columns, (height, 1))


def make_cityscapes(root: Path, split: str = "val", cities: dict[str, int] | None = None, label_ids: bool = False) -> Path:
    """Cityscapes with `cities` {city: frames}; labels are train-id stripes 0, 13, 255, or label ids 7, 26, 0."""
    for city, frames in (cities or {"aachen": 2, "bochum": 1}).items():
        for frame in range(frames):
            key = f"{city}_000000_{frame:06d}"
            write_rgb(root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png", rgb(frame))
            if label_ids:
                write_gray(root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png", label_with([7, 26, 0]))
            else:
                write_gray(root / "gtFine" / split / city / f"{key}_gtFine_labelTrainIds.png", label_with([0, 13, 255]))
    return root


# Cityscapes colours by label id, as GTAV's palette labels have them (ids 0-3 are all black).
CITYSCAPES_ID_COLOURS = [(0, 0, 0)] * 4 + [(81, 0, 81)] * 3 + [(128, 64, 128), (244, 35, 232)] + [(i, i, 1) for i in range(9, 34)]


def make_gtav(root: Path, frames: int = 3) -> Path:
    """GTAV: palette-PNG labels with Cityscapes ids 26 (car), 7 (road), 0 (unlabeled) as stripes."""
    for frame in range(frames):
        write_rgb(root / "images" / f"{frame:05d}.png", rgb(frame))
        write_palette_png(root / "labels" / f"{frame:05d}.png", label_with([26, 7, 0]), CITYSCAPES_ID_COLOURS)
    return root


def make_bdd100k(root: Path, split: str = "val", frames: int = 2) -> Path:
    for frame in range(frames):
        name = f"7d2f7975-e0c1c5a{frame}"
        write_rgb(root / "images" / "10k" / split / f"{name}.jpg", rgb(frame))
        write_gray(root / "labels" / "sem_seg" / "masks" / split / f"{name}.png", label_with([0, 18, 255]))
    return root


# A Mapillary v1.2 class list in a deliberately shuffled order: the mapping must go by name.
MAPILLARY_NAMES = [
    "animal--bird",
    "marking--general",
    "construction--flat--road",
    "construction--barrier--curb",
    "human--rider--motorcyclist",
    "object--vehicle--on-rails",
    "object--traffic-sign--back",
    "object--street-light",
    "void--unlabeled",
]
# Their Cityscapes train ids: bird 255, marking road 0, road 0, curb sidewalk 1, rider 12, train 16,
# sign back 7, street light pole 5, unlabeled 255.
MAPILLARY_TRAIN_IDS = [255, 0, 0, 1, 12, 16, 7, 5, 255]


def make_mapillary(root: Path, split_folder: str = "validation", frames: int = 2, config: bool = True) -> Path:
    if config:
        labels = [{"name": n, "readable": n, "color": [i, i, i], "instances": False, "evaluate": True} for i, n in enumerate(MAPILLARY_NAMES)]
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(json.dumps({"labels": labels, "version": "1.2"}))
    palette = [(i * 20, i * 10, i * 5) for i in range(len(MAPILLARY_NAMES))]
    for frame in range(frames):
        name = f"__{frame}M5gK8yO0lgTQ"
        write_rgb(root / split_folder / "images" / f"{name}.jpg", rgb(frame))
        write_palette_png(root / split_folder / "labels" / f"{name}.png", label_with(list(range(len(MAPILLARY_NAMES)))), palette)
    return root


def make_acdc(root: Path, conditions: tuple[str, ...] = ("fog", "night"), split: str = "val", frames: int = 2) -> Path:
    for condition in conditions:
        for frame in range(frames):
            sequence = f"GOPR{frame % 2:04d}"
            key = f"{sequence}_frame_{frame:06d}"
            write_rgb(root / "rgb_anon" / condition / split / sequence / f"{key}_rgb_anon.png", rgb(frame))
            write_gray(root / "gt" / condition / split / sequence / f"{key}_gt_labelTrainIds.png", label_with([10, 2, 255]))
    return root


def isprs_colour_label(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB colour label, expected train ids): stripes of the 6 ISPRS classes and black (-> 255)."""
    ids = label_with([0, 1, 2, 3, 4, 5, 255], height, width)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:6] = ISPRS.palette
    return lut[ids], ids


def make_potsdam(root: Path, tiles: dict[str, bool], height: int = 80, width: int = 100) -> Path:
    """Potsdam tiles {tile id: has label}, written as TIFF like the real release."""
    for key, labelled in tiles.items():
        write_rgb(root / "2_Ortho_RGB" / f"top_potsdam_{key}_RGB.tif", rgb(len(key), height, width))
        if labelled:
            write_rgb(root / "5_Labels_all" / f"top_potsdam_{key}_label.tif", isprs_colour_label(height, width)[0])
    return root


def make_vaihingen(root: Path, areas: dict[str, bool], height: int = 40, width: int = 50) -> Path:
    for area, labelled in areas.items():
        write_rgb(root / "top" / f"top_mosaic_09cm_area{area}.tif", rgb(int(area), height, width))
        if labelled:
            write_rgb(root / "gts_for_participants" / f"top_mosaic_09cm_area{area}.tif", isprs_colour_label(height, width)[0])
    return root


def make_folder(root: Path, frames: int = 2, classes: dict | None = None, values: list[int] | None = None) -> Path:
    for frame in range(frames):
        write_rgb(root / "images" / f"img{frame}.jpg", rgb(frame))
        write_gray(root / "masks" / f"img{frame}.png", label_with(values or [0, 1, 255]))
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return root



# SYNTHIA ids road 3, car 8, void 0 -> Cityscapes train ids 0, 13, 255.
SYNTHIA_LABEL_IDS = [3, 8, 0]
SYNTHIA_TRAIN_IDS = [0, 13, 255]


def synthia_raw_label(ids: np.ndarray, instances: int = 1000) -> np.ndarray:
    """A raw SYNTHIA label as OpenCV writes it: (H, W, 3) uint16 BGR, class ids in red, instance ids in green."""
    ids = np.asarray(ids, dtype=np.uint16)
    green = np.full(ids.shape, instances, dtype=np.uint16)  # above 255: reading the wrong channel would show
    return np.dstack([np.zeros_like(ids), green, ids])


def make_synthia(root: Path, frames: int = 3, train_id_files: bool = False) -> Path:
    """SYNTHIA RAND-CITYSCAPES: RGB/<n>.png with 16-bit 3-channel GT/LABELS/<n>.png (ids 3, 8, 0 as stripes).

    `train_id_files` also writes the converted GT/LABELS/<n>_labelTrainIds.png (train ids 0, 13, 255).
    """
    for frame in range(frames):
        key = f"{frame:07d}"
        write_rgb(root / "RGB" / f"{key}.png", rgb(frame))
        raw = synthia_raw_label(label_with(SYNTHIA_LABEL_IDS), instances=1000 + frame)
        write_gray(root / "GT" / "LABELS" / f"{key}.png", raw)
        if train_id_files:
            write_gray(root / "GT" / "LABELS" / f"{key}_labelTrainIds.png", label_with(SYNTHIA_TRAIN_IDS))
    return root


# UrbanSyn labels hold train ids with 19 for unlabelled: 11 person, 13 car, 19 -> 11, 13, 255.
URBANSYN_LABEL_VALUES = [11, 13, 19]
URBANSYN_TRAIN_IDS = [11, 13, 255]


def make_urbansyn(root: Path, frames: int = 3, official_names: bool = True) -> Path:
    """UrbanSyn: rgb/rgb_<n>.png with ss/ss_<n>.png as released, or rgb/<n>.png with ss/<n>.png."""
    for frame in range(frames):
        number = f"{frame + 1:04d}"
        image_name, label_name = (f"rgb_{number}.png", f"ss_{number}.png") if official_names else (f"{number}.png",) * 2
        write_rgb(root / "rgb" / image_name, rgb(frame))
        write_gray(root / "ss" / label_name, label_with(URBANSYN_LABEL_VALUES))
    return root


def make_source_and_targets(root: Path) -> Path:
    """A Cityscapes train split (the source) and two ACDC conditions (the targets) under `root`."""
    make_cityscapes(root / "cityscapes", split="train")
    make_acdc(root / "acdc")
    return root


# -- instance segmentation ------------------------------------------------------------------------

# A Cityscapes instance map (label id x 1000 + index on objects, plain label ids elsewhere), as
# painted rectangles (value, rows, columns) in order: later ones cover earlier ones.
CITYSCAPES_INSTANCE_PAINT = [
    (23, slice(0, 10), slice(0, W)),      # sky (stuff)
    (7, slice(10, 32), slice(0, W)),      # road (stuff)
    (26000, slice(12, 21), slice(4, 17)),  # car 0
    (26001, slice(12, 21), slice(20, 31)),  # car 1
    (24000, slice(5, 26), slice(34, 39)),  # person 0
    (33000, slice(20, 29), slice(40, 49)),  # bicycle 0
    (26, slice(24, 31), slice(4, 13)),     # a car group: crowd, not an instance
    (29000, slice(22, 31), slice(52, 61)),  # a caravan: instances, but not one of the 8 classes (train id 255)
    (1, slice(31, 32), slice(0, W)),       # ego vehicle (ignored)
]


def cityscapes_instance_ids() -> np.ndarray:
    ids = np.zeros((H, W), np.uint16)
    for value, rows, cols in CITYSCAPES_INSTANCE_PAINT:
        ids[rows, cols] = value
    return ids


def train_ids_of(ids: np.ndarray) -> np.ndarray:
    """The labelTrainIds map that goes with an instance map (the official id -> train id table)."""
    from gkd_deploy.data.classes import CITYSCAPES_ID_TO_TRAINID, id_lookup_table

    label_ids = np.where(ids >= 1000, ids // 1000, ids)
    return id_lookup_table(CITYSCAPES_ID_TO_TRAINID)[label_ids]


def make_cityscapes_instances(root: Path, split: str = "train", frames: int = 3, instances: np.ndarray | None = None) -> Path:
    """Cityscapes with 16-bit *_gtFine_instanceIds.png and the matching *_gtFine_labelTrainIds.png."""
    ids = cityscapes_instance_ids() if instances is None else instances
    for frame in range(frames):
        key = f"aachen_000000_{frame:06d}"
        write_rgb(root / "leftImg8bit" / split / "aachen" / f"{key}_leftImg8bit.png", rgb(frame))
        write_gray(root / "gtFine" / split / "aachen" / f"{key}_gtFine_labelTrainIds.png", train_ids_of(ids))
        write_gray(root / "gtFine" / split / "aachen" / f"{key}_gtFine_instanceIds.png", ids)
    return root


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a (H, W) bool mask: run lengths in column-major order, zeros first."""
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if flat[0] == 0 else [0, *counts]
