"""Data sets by name: `name=path` parsing and building the evaluation/training domains.

`parse_dataset_list("cityscapes=/data/cs,acdc=/data/acdc")` gives `DatasetSpec`s; `build_domains`
turns one into `{domain name: SegmentationDataset}` (ACDC gives one domain per condition).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gkd_deploy.data.base import SegmentationDataset, Transform
from gkd_deploy.data.datasets.acdc import acdc_domains
from gkd_deploy.data.datasets.bdd100k import BDD100KDataset
from gkd_deploy.data.datasets.cityscapes import CityscapesDataset
from gkd_deploy.data.datasets.folder import FolderDataset, ImageFolderDataset
from gkd_deploy.data.datasets.gtav import GTAVDataset
from gkd_deploy.data.datasets.isprs import PotsdamDataset, VaihingenDataset
from gkd_deploy.data.datasets.mapillary import MapillaryDataset
from gkd_deploy.errors import ConfigError

SPLITS = ("train", "val")

# (root, split, transform) -> {domain name: data set}
DomainBuilder = Callable[[Path, str, "Transform | None"], dict[str, SegmentationDataset]]


@dataclass(frozen=True)
class DatasetSpec:
    """A data set named on the command line or in a config: its registry name and root folder."""

    name: str
    path: Path


def _one(dataset: SegmentationDataset) -> dict[str, SegmentationDataset]:
    return {dataset.name: dataset}


def _cityscapes(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(CityscapesDataset(root, split, transform))


def _gtav(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(GTAVDataset(root, transform))  # no split folders: every image, whatever the split


def _bdd100k(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(BDD100KDataset(root, split, transform))


def _mapillary(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(MapillaryDataset(root, split, transform))


def _acdc(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return dict(acdc_domains(root, split, transform))


def _potsdam(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(PotsdamDataset(root, split, transform))


def _vaihingen(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(VaihingenDataset(root, split, transform))


def _folder(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(FolderDataset(root, transform))  # one folder is one split: name each split's folder


def _images(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(ImageFolderDataset(root, transform))


DATASETS: dict[str, DomainBuilder] = {
    "cityscapes": _cityscapes,
    "gtav": _gtav,
    "bdd100k": _bdd100k,
    "mapillary": _mapillary,
    "acdc": _acdc,
    "potsdam": _potsdam,
    "vaihingen": _vaihingen,
    "folder": _folder,
    "images": _images,
}

# A comma starts a new entry only where "name=" follows, so commas inside paths survive.
_ENTRY_SEPARATOR = re.compile(r",(?=\s*[A-Za-z0-9_.-]+\s*=)")


def _unknown_name(name: str, text: str) -> ConfigError:
    known = ", ".join(DATASETS)
    guesses = difflib.get_close_matches(name, DATASETS, n=3, cutoff=0.6)
    guesses += [k for k in DATASETS if name and k.startswith(name) and k not in guesses]
    hint = f" did you mean {' or '.join(guesses)}?" if guesses else ""
    return ConfigError(f"unknown data set {name!r} in {text!r};{hint} known data sets: {known}")


def parse_dataset_arg(text: str) -> DatasetSpec:
    """`"cityscapes=/data/cs"` -> `DatasetSpec("cityscapes", Path("/data/cs"))`.

    The name is case-insensitive; `~` in the path is expanded.
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"data set entry {text!r} must be text of the form NAME=PATH, e.g. cityscapes=/data/cityscapes"
        )
    name, separator, path = text.partition("=")
    name, path = name.strip().lower(), path.strip()
    if not separator:
        if name in DATASETS:
            raise ConfigError(f"data set {text!r} has no path; write {name}=/path/to/{name}")
        raise ConfigError(
            f"data set {text!r} is not NAME=PATH; write e.g. cityscapes=/data/cityscapes, or images={text.strip()} "
            f"for an unlabeled image folder (known data sets: {', '.join(DATASETS)})"
        )
    if name not in DATASETS:
        raise _unknown_name(name, text)
    if not path:
        raise ConfigError(f"data set {text!r} has no path after '='; write {name}=/path/to/{name}")
    return DatasetSpec(name, Path(path).expanduser())


def parse_dataset_list(value: str | Sequence[str | DatasetSpec]) -> list[DatasetSpec]:
    """`"cityscapes=/a,bdd100k=/b"` or `["cityscapes=/a", "bdd100k=/b"]` (as YAML gives) -> specs.

    Each data set name may appear once (its domains would otherwise collide).
    """
    items = [value] if isinstance(value, (str, DatasetSpec)) else value
    if not isinstance(items, Sequence):
        raise ConfigError(f"data sets must be NAME=PATH text or a list of such entries, not {type(value).__name__}")
    specs: list[DatasetSpec] = []
    for item in items:
        if isinstance(item, DatasetSpec):
            specs.append(item)
        elif isinstance(item, str):
            specs += [parse_dataset_arg(part) for part in _ENTRY_SEPARATOR.split(item) if part.strip()]
        else:
            specs.append(parse_dataset_arg(item))  # raises: not text
    if not specs:
        raise ConfigError("no data sets given; name at least one as NAME=PATH, e.g. cityscapes=/data/cityscapes")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"data set {spec.name!r} is given twice; give each data set once")
        seen.add(spec.name)
    return specs


def build_domains(
    spec: DatasetSpec, split: str = "val", transform: Transform | None = None
) -> dict[str, SegmentationDataset]:
    """Index the data set of `spec`: `{domain name: SegmentationDataset}`, one entry for most data
    sets and one per condition present for ACDC ("acdc-fog", ...). `split` is "train" or "val"."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    builder = DATASETS.get(spec.name)
    if builder is None:
        raise _unknown_name(spec.name, f"{spec.name}={spec.path}")
    return builder(Path(spec.path), split, transform)
