"""Training / evaluation transforms: shapes, label values, image-label alignment, seeding, pickling."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import gkd_deploy.data.transforms as transforms
from gkd_deploy.data.transforms import eval_transform, train_transform
from gkd_deploy.errors import ConfigError


def blocks(height: int = 64, width: int = 96, block: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) where each `block`-sized square has one class and the image's red channel is 10 * class."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 19, (height // block, width // block), dtype=np.uint8)
    label = np.kron(classes, np.ones((block, block), dtype=np.uint8))
    image = np.dstack([label * 10, rng.integers(0, 256, label.shape, dtype=np.uint8), np.full(label.shape, 77, np.uint8)])
    return image, label


@pytest.mark.parametrize("crop", [(32, 48), (128, 160), (64, 96)])
def test_output_has_crop_size_and_only_input_values_plus_ignore(crop):
    image, label = blocks()
    transform = train_transform(crop_size=crop, seed=1)
    for _ in range(10):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (*crop, 3) and out_image.dtype == np.uint8
        assert out_label.shape == crop and out_label.dtype == np.uint8
        assert set(np.unique(out_label)) <= set(np.unique(label)) | {255}


def test_padding_uses_ignore_for_labels_and_black_for_images():
    image, label = blocks(16, 16)
    out_image, out_label = train_transform(crop_size=(64, 64), scale_range=(1.0, 1.0), photometric=False, seed=0)(image, label)
    padded = out_label == 255
    assert padded.sum() == 64 * 64 - 16 * 16
    assert (out_image[padded] == 0).all()


def test_flip_and_crop_keep_image_and_label_aligned():
    # Unscaled, un-jittered: every pixel's red channel must still be 10 * its label.
    image, label = blocks()
    transform = train_transform(crop_size=(40, 40), scale_range=(1.0, 1.0), photometric=False, seed=3)
    flipped = 0
    for _ in range(20):
        out_image, out_label = transform(image, label)
        assert np.array_equal(out_image[:, :, 0], out_label * 10)
        flipped += not any(np.array_equal(out_image, image[y : y + 40, x : x + 40]) for y in range(25) for x in range(57))
    assert 0 < flipped < 20  # some flipped, some not


def test_scaling_keeps_image_and_label_aligned():
    image, label = blocks(block=16)
    transform = train_transform(crop_size=(48, 48), photometric=False, seed=5)
    for _ in range(10):
        out_image, out_label = transform(image, label)
        # Linear image resampling blurs block edges; away from them every pixel must agree
        # (classes differ by at least 10 in the red channel).
        kernel = np.ones((3, 3), np.uint8)
        interior = (cv2.erode(out_label, kernel) == cv2.dilate(out_label, kernel)) & (out_label != 255)
        assert interior.sum() > 500
        difference = np.abs(out_image[:, :, 0].astype(int) - out_label.astype(int) * 10)
        assert difference[interior].max() <= 5  # rounding only; a shifted label would be off by >= 10


def test_photometric_changes_image_only():
    image, label = blocks()
    transform = train_transform(crop_size=(64, 96), scale_range=(1.0, 1.0), flip=False, seed=0)
    outputs = [transform(image, label) for _ in range(5)]
    assert all(np.array_equal(out_label, label) for _, out_label in outputs)
    assert any(not np.array_equal(out_image, image) for out_image, _ in outputs)


def test_seeded_transforms_are_reproducible():
    image, label = blocks()
    first, second = train_transform((32, 32), seed=7), train_transform((32, 32), seed=7)
    for _ in range(5):
        a, b = first(image, label), second(image, label)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = train_transform((32, 32), seed=8)
    assert any(not np.array_equal(other(image, label)[0], first(image, label)[0]) for _ in range(5))


def test_pickled_transform_continues_identically():
    image, label = blocks()
    transform = train_transform((32, 32), seed=11)
    transform(image, label)
    copy = pickle.loads(pickle.dumps(transform))
    a, b = transform(image, label), copy(image, label)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_workers_get_different_streams(monkeypatch):
    image, label = blocks()
    outputs = {}
    for worker_id, worker_seed in ((0, 100), (1, 101), (0, 100)):
        # Each DataLoader worker receives its own copy of the transform.
        transform = train_transform((32, 32), seed=0)
        monkeypatch.setattr(transforms, "get_worker_info", lambda: SimpleNamespace(id=worker_id, seed=worker_seed))
        outputs.setdefault(worker_seed, []).append(transform(image, label)[0])
    assert np.array_equal(*outputs[100])  # same worker seed, same stream
    assert not np.array_equal(outputs[100][0], outputs[101][0])


def test_unlabeled_input_passes_none():
    image, _ = blocks()
    out_image, out_label = train_transform((32, 32), seed=0)(image, None)
    assert out_image.shape == (32, 32, 3) and out_label is None


def test_eval_transform_is_identity_and_picklable():
    image, label = blocks()
    transform = pickle.loads(pickle.dumps(eval_transform()))
    out_image, out_label = transform(image, label)
    assert out_image is image and out_label is label


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": (0, 512)}, "crop_size must be two positive whole numbers"),
        ({"crop_size": "big"}, "crop_size must be two numbers"),
        ({"scale_range": (2.0, 0.5)}, "0 < low <= high"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train_transform(**kwargs)
