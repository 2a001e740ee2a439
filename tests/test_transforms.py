"""Training / evaluation transforms: the authors' pipelines, label values, alignment, seeding, pickling."""

from __future__ import annotations

import pickle
import random
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import gkd_deploy.data.transforms as transforms
from gkd_deploy.data.transforms import (SHORT_SIDE_RATIOS, DistillTransform, eval_transform, fit_within,
                                        photometric_distortion, train_transform)
from gkd_deploy.errors import ConfigError

UNSCALED = {"ratios": (1.0,)}  # with short_side = the image's short side: no resize


def blocks(height: int = 64, width: int = 96, block: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) where each `block`-sized square has one class and the image's red channel is 10 * class."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 19, (height // block, width // block), dtype=np.uint8)
    label = np.kron(classes, np.ones((block, block), dtype=np.uint8))
    image = np.dstack([label * 10, rng.integers(0, 256, label.shape, dtype=np.uint8), np.full(label.shape, 77, np.uint8)])
    return image, label


# --- stage 3 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("crop", [(32, 48), (128, 160), (64, 96)])
def test_output_has_crop_size_and_only_input_values_plus_ignore(crop):
    image, label = blocks()
    transform = train_transform(crop_size=crop, short_side=64, seed=1)
    for _ in range(10):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (*crop, 3) and out_image.dtype == np.uint8
        assert out_label.shape == crop and out_label.dtype == np.uint8
        assert set(np.unique(out_label)) <= set(np.unique(label)) | {255}


def test_short_side_is_drawn_from_the_authors_ratios_and_the_long_side_capped():
    # mmseg's RandomChoiceResize: short side = 512 x {0.5, 0.6, ..., 2.0}, long side at most 2048.
    assert SHORT_SIDE_RATIOS == pytest.approx([0.5 + 0.1 * i for i in range(16)])
    image, label = blocks(40, 80, block=8)
    transform = train_transform(crop_size=(200, 200), short_side=20, cat_max_ratio=1.0, photometric=False, seed=0)
    heights = set()
    for _ in range(200):
        _, out_label = transform(image, label)
        heights.add(int((out_label != 255).any(axis=1).sum()))  # the resized image's height, the rest is padding
    assert heights <= {int(40 * (20 * r / 40) + 0.5) for r in SHORT_SIDE_RATIOS}
    assert len(heights) >= 12
    long_image, long_label = blocks(8, 96, block=8)
    capped = train_transform(crop_size=(200, 200), short_side=20, cat_max_ratio=1.0, photometric=False, seed=0)
    for _ in range(20):
        _, out_label = capped(long_image, long_label)
        assert (out_label != 255).any(axis=0).sum() <= 4 * 20  # the long side never exceeds 4 x short_side


def test_cat_max_ratio_prefers_crops_where_no_class_dominates():
    # One class fills the image except a small corner of another: with cat_max_ratio 0.75 the crop is
    # retried until the corner class takes part (mmseg tries up to 10 times).
    label = np.zeros((64, 64), np.uint8)
    label[:20, :20] = 5
    image = np.dstack([label * 10] * 3)

    def mixed_share(cat_max_ratio):
        transform = train_transform((24, 24), short_side=64, cat_max_ratio=cat_max_ratio, flip=False,
                                    photometric=False, seed=0, **UNSCALED)
        return np.mean([len(np.unique(transform(image, label)[1])) > 1 for _ in range(200)])

    assert mixed_share(1.0) < 0.3 and mixed_share(0.75) > 0.45


def test_padding_uses_ignore_for_labels_and_black_for_images():
    image, label = blocks(16, 16)
    out_image, out_label = train_transform(crop_size=(64, 64), short_side=16, photometric=False, seed=0,
                                           **UNSCALED)(image, label)
    padded = out_label == 255
    assert padded.sum() == 64 * 64 - 16 * 16
    assert (out_image[padded] == 0).all()


def test_flip_and_crop_keep_image_and_label_aligned():
    # Unscaled, un-jittered: every pixel's red channel must still be 10 * its label.
    image, label = blocks()
    transform = train_transform(crop_size=(40, 40), short_side=64, cat_max_ratio=1.0, photometric=False, seed=3,
                                **UNSCALED)
    flipped = 0
    for _ in range(20):
        out_image, out_label = transform(image, label)
        assert np.array_equal(out_image[:, :, 0], out_label * 10)
        flipped += not any(np.array_equal(out_image, image[y : y + 40, x : x + 40]) for y in range(25) for x in range(57))
    assert 0 < flipped < 20  # some flipped, some not


def test_scaling_keeps_image_and_label_aligned():
    image, label = blocks(block=16)
    transform = train_transform(crop_size=(48, 48), short_side=64, photometric=False, seed=5)
    for _ in range(10):
        out_image, out_label = transform(image, label)
        # Linear image resampling blurs block edges; away from them every pixel must agree
        # (classes differ by at least 10 in the red channel).
        kernel = np.ones((3, 3), np.uint8)
        interior = (cv2.erode(out_label, kernel) == cv2.dilate(out_label, kernel)) & (out_label != 255)
        assert interior.sum() > 300
        difference = np.abs(out_image[:, :, 0].astype(int) - out_label.astype(int) * 10)
        assert difference[interior].max() <= 5  # rounding only; a shifted label would be off by >= 10


def test_photometric_changes_image_only():
    image, label = blocks()
    transform = train_transform(crop_size=(64, 96), short_side=64, flip=False, seed=0, **UNSCALED)
    outputs = [transform(image, label) for _ in range(5)]
    assert all(np.array_equal(out_label, label) for _, out_label in outputs)
    assert any(not np.array_equal(out_image, image) for out_image, _ in outputs)


def test_photometric_distortion_follows_mmseg_bounds():
    # Brightness moves a grey image by at most 32; a grey image has no saturation or hue to change,
    # and contrast scales by 0.5-1.5: a 100-grey image stays grey within [18, 198].
    grey = np.full((8, 8, 3), 100, np.uint8)
    values = set()
    for seed in range(300):
        out = photometric_distortion(grey, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and (out == out[0, 0]).all()
        assert (out[0, 0] == out[0, 0, 0]).all()
        values.add(int(out[0, 0, 0]))
    assert min(values) >= (100 - 32) * 0.5 - 1 and max(values) <= (100 + 32) * 1.5 + 1
    assert 100 in values and len(values) > 50  # unchanged sometimes (every step has p = 0.5), varied often


def test_seeded_transforms_are_reproducible():
    image, label = blocks()
    first, second = train_transform((32, 32), short_side=64, seed=7), train_transform((32, 32), short_side=64, seed=7)
    for _ in range(5):
        a, b = first(image, label), second(image, label)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = train_transform((32, 32), short_side=64, seed=8)
    assert any(not np.array_equal(other(image, label)[0], first(image, label)[0]) for _ in range(5))
    # reseed(s) makes the next item a function of s alone, whatever came before.
    first.reseed(99)
    expected = first(image, label)
    second(image, label)
    second.reseed(99)
    assert np.array_equal(second(image, label)[0], expected[0])


def test_pickled_transform_continues_identically():
    image, label = blocks()
    transform = train_transform((32, 32), short_side=64, seed=11)
    transform(image, label)
    copy = pickle.loads(pickle.dumps(transform))
    a, b = transform(image, label), copy(image, label)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_workers_get_different_streams(monkeypatch):
    image, label = blocks()
    outputs = {}
    for worker_id, worker_seed in ((0, 100), (1, 101), (0, 100)):
        # Each DataLoader worker receives its own copy of the transform.
        transform = train_transform((32, 32), short_side=64, seed=0)
        monkeypatch.setattr(transforms, "get_worker_info", lambda: SimpleNamespace(id=worker_id, seed=worker_seed))
        outputs.setdefault(worker_seed, []).append(transform(image, label)[0])
    assert np.array_equal(*outputs[100])  # same worker seed, same stream
    assert not np.array_equal(outputs[100][0], outputs[101][0])


def test_unlabeled_input_passes_none():
    image, _ = blocks()
    out_image, out_label = train_transform((32, 32), short_side=64, seed=0)(image, None)
    assert out_image.shape == (32, 32, 3) and out_label is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": (0, 512)}, "crop_size must be two positive whole numbers"),
        ({"crop_size": "big"}, "crop_size must be two numbers"),
        ({"short_side": 0}, "short_side must be a positive"),
        ({"cat_max_ratio": 1.5}, "cat_max_ratio must be in"),
        ({"ratios": ()}, "ratios must be positive"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train_transform(**kwargs)


# --- stages 1-2 ---------------------------------------------------------------------------------

def test_distillation_transform_is_timms_pipeline_on_the_0_255_scale():
    image, _ = blocks(120, 160)
    transform = DistillTransform(64)
    outputs = []
    for seed in range(12):
        transform.reseed(seed)
        out, label = transform(image, None)
        assert out.shape == (64, 64, 3) and out.dtype == np.float32 and label is None
        outputs.append(out)
    # RandomErasing (p 0.25, pixel mode) fills N(0, 1) noise in normalised space: values beyond 0..255.
    erased = [o for o in outputs if o.min() < -1 or o.max() > 256]
    assert 0 < len(erased) < len(outputs)
    # The rest stays within the image's range (resampling, flips and RandAugment on uint8 pixels).
    plain = [o for o in outputs if not (o.min() < -1 or o.max() > 256)]
    assert all(o.min() >= -0.5 and o.max() <= 255.5 for o in plain)
    assert len({o.tobytes() for o in outputs}) == len(outputs)


def test_distillation_transform_is_a_function_of_the_seed_and_leaves_global_state_alone():
    image, _ = blocks(120, 160)
    transform = DistillTransform(48)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    transform.reseed(5)
    first = transform(image, None)[0]
    after = (random.random(), np.random.random(), torch.rand(1).item())
    assert after == before  # Python's, numpy's and torch's global generators are untouched
    other = pickle.loads(pickle.dumps(DistillTransform(48)))
    other(image, None)  # an earlier item does not change what seed 5 gives
    other.reseed(5)
    assert np.array_equal(other(image, None)[0], first)


# --- evaluation ---------------------------------------------------------------------------------

def test_eval_transform_resizes_the_image_only_and_is_picklable():
    image, label = blocks(64, 128)
    transform = pickle.loads(pickle.dumps(eval_transform((64, 32))))
    out_image, out_label = transform(image, label)
    assert out_image.shape == (32, 64, 3) and out_label is label
    identity = eval_transform(None)
    assert identity(image, label)[0] is image
    assert fit_within(1024, 2048, (1024, 512)) == (512, 1024)


def test_rand_augment_posterize_at_the_top_magnitude_gives_a_black_image():
    # m9 + magnitude noise reaches 10, where timm asks Pillow for 0 bits (refused since Pillow 9);
    # the recipe ran on a Pillow that returned the fully masked image.
    from PIL import Image
    from timm.data.auto_augment import RandAugment

    image = Image.fromarray(np.full((4, 4, 3), 200, np.uint8))
    assert np.asarray(transforms._posterize(image, 0)).max() == 0
    assert np.asarray(transforms._posterize(image, 1)).max() == 128
    transform = DistillTransform(32)
    rand_augment = next(s for s in transform._timm_pipeline().transforms if isinstance(s, RandAugment))
    posterize = [op for op in rand_augment.ops if op.name.startswith("Posterize")]
    assert posterize and all(op.aug_fn is transforms._posterize for op in posterize)
