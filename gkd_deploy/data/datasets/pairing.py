"""Pairing images with labels that share a file stem in two flat folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gkd_deploy.data.base import Sample
from gkd_deploy.data.datasets import listing


def pair_by_stem(
    image_dir: Path, label_dir: Path, image_suffixes: tuple[str, ...], label_suffixes: tuple[str, ...]
) -> tuple[list[Sample], int]:
    """Samples for images in `image_dir` with a same-stem label in `label_dir`, and the count without one.

    Sample names are the file stems. Where several labels share a stem, the first suffix in
    `label_suffixes` wins.
    """
    labels: dict[str, str] = {}
    rank = {suffix: i for i, suffix in enumerate(label_suffixes)}
    for name in listing.files(label_dir, label_suffixes):
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        if stem not in labels or rank[suffix] < rank[Path(labels[stem]).suffix.lower()]:
            labels[stem] = name
    samples, missing = [], 0
    for name in listing.files(image_dir, image_suffixes):
        stem = Path(name).stem
        if stem in labels:
            samples.append(Sample(image_dir / name, label_dir / labels[stem], stem))
        else:
            missing += 1
    return samples, missing


def pair_by_candidates(
    image_dir: Path, label_dir: Path, image_suffixes: tuple[str, ...], candidates: Callable[[str], tuple[str, ...]]
) -> tuple[list[Sample], int]:
    """Samples for images in `image_dir` whose label in `label_dir` (a .png) has one of the stems
    `candidates(image stem)` gives, the first that exists winning; and the count without one."""
    labels = {Path(name).stem: name for name in listing.files(label_dir, (".png",))}
    samples, missing = [], 0
    for name in listing.files(image_dir, image_suffixes):
        stem = Path(name).stem
        label_name = next((labels[c] for c in candidates(stem) if c in labels), None)
        if label_name is None:
            missing += 1
        else:
            samples.append(Sample(image_dir / name, label_dir / label_name, stem))
    return samples, missing
