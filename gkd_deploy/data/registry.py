"""Data sets by name: `name=path` parsing and building the evaluation/training domains.

`parse_dataset_list("cityscapes=/data/cs,acdc=/data/acdc")` gives `DatasetSpec`s; `build_domains`
turns one into `{domain name: SegmentationDataset}` (ACDC gives one domain per condition).

`NAME:DOMAIN=PATH` names the domain (two folders in one layout, e.g. `cityscapes=/data/cs` and
`cityscapes:camvid=/data/camvid`). In a YAML config an entry may also be a mapping with the
evaluation settings of that data set: `{data: "cityscapes:camvid=/data/camvid", eval_size: native,
score_classes: labelled}`. A data set folder can carry its own defaults for those two settings in
a `gkd-dataset.json` file at its root (the built-in synthetic domains do).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gkd_deploy.data.base import SegmentationDataset, Transform
from gkd_deploy.data.datasets.acdc import acdc_domains
from gkd_deploy.data.datasets.bdd100k import BDD100KDataset
from gkd_deploy.data.datasets.cityscapes import CityscapesDataset
from gkd_deploy.data.datasets.folder import FolderDataset, ImageFolderDataset
from gkd_deploy.data.datasets.gtav import GTAVDataset
from gkd_deploy.data.datasets.isprs import PotsdamDataset, VaihingenDataset
from gkd_deploy.data.datasets.mapillary import MapillaryDataset
from gkd_deploy.data.datasets.synthia import SynthiaDataset
from gkd_deploy.data.datasets.urbansyn import UrbanSynDataset
from gkd_deploy.data import SPLITS
from gkd_deploy.size import Size
from gkd_deploy.errors import ConfigError

# (root, split, transform) -> {domain name: data set}
DomainBuilder = Callable[[Path, str, "Transform | None"], dict[str, SegmentationDataset]]


DATASET_MANIFEST = "gkd-dataset.json"
NATIVE = "native"
LABELLED = "labelled"

# A test-time resize: None (the loader's default, or the folder's manifest), "native", or (W, H).
EvalSize = "str | tuple[int, int] | None"
# Classes in the mean: None (all classes, the mmseg rule), "labelled" (those present in the
# domain's labels), or a tuple of class names.
ScoreClasses = "str | tuple[str, ...] | None"


@dataclass(frozen=True)
class DatasetSpec:
    """A data set named on the command line or in a config: its registry name and root folder,
    optionally a domain name and evaluation settings that override the loader's and the folder's."""

    name: str
    path: Path
    domain: str | None = None
    eval_size: Any = None  # EvalSize
    score_classes: Any = None  # ScoreClasses

    def to_config(self) -> str | dict[str, Any]:
        """The form a YAML config holds (plain text when nothing but the folder is set)."""
        text = f"{self.name}{':' + self.domain if self.domain else ''}={self.path}"
        if self.eval_size is None and self.score_classes is None:
            return text
        entry: dict[str, Any] = {"data": text}
        if self.eval_size is not None:
            entry["eval_size"] = self.eval_size if isinstance(self.eval_size, str) else list(self.eval_size)
        if self.score_classes is not None:
            entry["score_classes"] = (self.score_classes if isinstance(self.score_classes, str)
                                      else list(self.score_classes))
        return entry


def _one(dataset: SegmentationDataset) -> dict[str, SegmentationDataset]:
    return {dataset.name: dataset}


def _cityscapes(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(CityscapesDataset(root, split, transform))


def _gtav(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(GTAVDataset(root, transform))  # no split folders: every image, whatever the split


def _synthia(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(SynthiaDataset(root, transform))  # no split folders: every image, whatever the split


def _urbansyn(root: Path, split: str, transform: Transform | None) -> dict[str, SegmentationDataset]:
    return _one(UrbanSynDataset(root, transform))  # no split folders: every image, whatever the split


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
    "synthia": _synthia,
    "urbansyn": _urbansyn,
    "bdd100k": _bdd100k,
    "mapillary": _mapillary,
    "acdc": _acdc,
    "potsdam": _potsdam,
    "vaihingen": _vaihingen,
    "folder": _folder,
    "images": _images,
}

# A comma starts a new entry only where "name=" (or "name:domain=") follows, so commas inside
# paths survive.
_ENTRY_SEPARATOR = re.compile(r",(?=\s*[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?\s*=)")


def split_dataset_text(text: str) -> list[str]:
    """`"cityscapes=/a,acdc=/b"` -> `["cityscapes=/a", "acdc=/b"]` (commas inside paths stay)."""
    return [part.strip() for part in _ENTRY_SEPARATOR.split(text) if part.strip()]


# Data sets with instance annotations only (no semantic labels): accepted wherever an instance
# model's data is named (`evaluation.instances.INSTANCE_LOADERS` reads them), refused where
# semantic labels are needed. `coco` also names ADE20K's instance release in COCO format.
INSTANCE_ONLY = ("coco",)


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
    name, _, domain = name.partition(":")
    name, domain = name.strip(), domain.strip() or None
    if domain is not None and not re.fullmatch(r"[a-z0-9_.-]+", domain):
        raise ConfigError(f"domain name {domain!r} in {text!r} may hold only letters, digits, '.', '_' and '-'")
    if not separator:
        if name in DATASETS or name in INSTANCE_ONLY:
            raise ConfigError(f"data set {text!r} has no path; write {name}=/path/to/{name}")
        raise ConfigError(
            f"data set {text!r} is not NAME=PATH; write e.g. cityscapes=/data/cityscapes, or images={text.strip()} "
            f"for an unlabeled image folder (known data sets: {', '.join(DATASETS)})"
        )
    if name not in DATASETS and name not in INSTANCE_ONLY:
        raise _unknown_name(name, text)
    if not path:
        raise ConfigError(f"data set {text!r} has no path after '='; write {name}=/path/to/{name}")
    return DatasetSpec(name, Path(path).expanduser(), domain)


def parse_dataset_entry(entry: str | Mapping[str, Any] | DatasetSpec) -> DatasetSpec:
    """One config entry: `NAME[:DOMAIN]=PATH` text, or a mapping {data, eval_size, score_classes}."""
    if isinstance(entry, DatasetSpec):
        return entry
    if not isinstance(entry, Mapping):
        return parse_dataset_arg(entry)
    unknown = sorted(set(entry) - {"data", "eval_size", "score_classes"})
    if unknown or "data" not in entry:
        raise ConfigError(f"data set entry {dict(entry)!r}: expected the keys data (NAME=PATH), eval_size and "
                          f"score_classes{'; unknown: ' + ', '.join(unknown) if unknown else ''}")
    spec = parse_dataset_arg(entry["data"])
    return dataclasses.replace(spec, eval_size=parse_eval_size(entry.get("eval_size")),
                               score_classes=parse_score_classes(entry.get("score_classes")))


def parse_eval_size(value: Any) -> Any:
    """None / "default", "native", "WxH" text or a [W, H] pair -> None, "native" or (W, H)."""
    if value is None or value == "default":
        return None
    if value == NATIVE:
        return NATIVE
    what = "eval size (give 'default', 'native' or WIDTHxHEIGHT)"
    if isinstance(value, str):
        return Size.parse(value, what).wh
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return Size(height=value[1], width=value[0], what=what).wh  # a [W, H] pair, as the text's order
    raise ConfigError(f"{what}: got {value!r}")


def parse_score_classes(value: Any) -> Any:
    """None / "all", "labelled", or class names (a list, or text with commas) -> None, "labelled" or a tuple."""
    if value is None or value == "all":
        return None
    if value == LABELLED:
        return LABELLED
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"score_classes {value!r} must be 'all', 'labelled' or a list of class names")
    return tuple(n.strip() for n in names)


def parse_dataset_list(value: str | Sequence[str | DatasetSpec]) -> list[DatasetSpec]:
    """`"cityscapes=/a,bdd100k=/b"` or `["cityscapes=/a", "bdd100k=/b"]` (as YAML gives) -> specs.

    Each data set name may appear once (its domains would otherwise collide).
    """
    items = [value] if isinstance(value, (str, DatasetSpec, Mapping)) else value
    if not isinstance(items, Sequence):
        raise ConfigError(f"data sets must be NAME=PATH text or a list of such entries, not {type(value).__name__}")
    specs: list[DatasetSpec] = []
    for item in items:
        if isinstance(item, str):
            specs += [parse_dataset_arg(part) for part in split_dataset_text(item)]
        else:
            specs.append(parse_dataset_entry(item))  # raises for anything but a spec or a mapping
    if not specs:
        raise ConfigError("no data sets given; name at least one as NAME=PATH, e.g. cityscapes=/data/cityscapes")
    seen: set[str] = set()
    for spec in specs:
        key = spec.domain or spec.name
        if key in seen:
            raise ConfigError(f"data set {key!r} is given twice; give each data set once, or name the domains "
                              f"apart with NAME:DOMAIN=PATH (e.g. {spec.name}:other={spec.path})")
        seen.add(key)
    return specs


def build_domains(
    spec: DatasetSpec, split: str = "val", transform: Transform | None = None
) -> dict[str, SegmentationDataset]:
    """Index the data set of `spec`: `{domain name: SegmentationDataset}`, one entry for most data
    sets and one per condition present for ACDC ("acdc-fog", ...). `split` is "train" or "val"."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    builder = DATASETS.get(spec.name)
    if spec.name in INSTANCE_ONLY:
        raise ConfigError(f"{spec.name}={spec.path} holds instance annotations only, no semantic labels: it serves "
                          "instance models (gkd train --task instance, their eval and validate)")
    if builder is None:
        raise _unknown_name(spec.name, f"{spec.name}={spec.path}")
    domains = builder(Path(spec.path), split, transform)
    defaults = _read_manifest(Path(spec.path))
    eval_size = spec.eval_size if spec.eval_size is not None else defaults.get("eval_size")
    score_classes = spec.score_classes if spec.score_classes is not None else defaults.get("score_classes")
    renamed = {}
    for name, dataset in domains.items():
        if spec.domain:
            name = spec.domain + name[len(spec.name):]  # "acdc-fog" -> "<domain>-fog"
            dataset.name = name
        if eval_size is not None:
            dataset.eval_size = None if eval_size == NATIVE else eval_size
        dataset.score_classes = score_classes
        renamed[name] = dataset
    return renamed


def _read_manifest(root: Path) -> dict[str, Any]:
    """The evaluation defaults a data set folder declares in its `gkd-dataset.json` (if any)."""
    path = root / DATASET_MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not readable JSON ({error}); fix or delete it") from None
    if not isinstance(data, dict) or set(data) - {"eval_size", "score_classes"}:
        raise ConfigError(f"{path} must be a JSON object with the keys eval_size and score_classes")
    # In the file, null means "score at the native resolution".
    eval_size = NATIVE if "eval_size" in data and data["eval_size"] is None else parse_eval_size(data.get("eval_size"))
    return {"eval_size": eval_size, "score_classes": parse_score_classes(data.get("score_classes"))}
