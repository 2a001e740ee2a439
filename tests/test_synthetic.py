"""The built-in synthetic street scenes: determinism, labels, classes, styles, folder layouts,
parallel writing, video, and argument checks. Small sizes keep the whole file fast."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures_data import TRAIN_ID as ID, file_contents
from gkd_deploy.data.classes import CITYSCAPES, IGNORE_INDEX
from gkd_deploy.data.synthetic import (
    CONDITIONS,
    STYLES,
    SyntheticSummary,
    render_clip,
    render_scene,
    scene_seed,
    write_synthetic,
)
from gkd_deploy.errors import ConfigError

SMALL = (256, 128)


# -- scenes -------------------------------------------------------------------------------------


def test_same_seed_gives_identical_output_and_other_seeds_differ():
    image, label = render_scene(3, SMALL)
    again_image, again_label = render_scene(3, SMALL)
    other_image, other_label = render_scene(4, SMALL)
    assert image.shape == (128, 256, 3) and image.dtype == np.uint8
    assert label.shape == (128, 256) and label.dtype == np.uint8
    assert np.array_equal(image, again_image) and np.array_equal(label, again_label)
    assert not np.array_equal(image, other_image)
    assert not np.array_equal(label, other_label)


@pytest.fixture(scope="module")
def labels() -> list[np.ndarray]:
    """Label maps of 60 scenes."""
    return [render_scene(seed, SMALL)[1] for seed in range(60)]


def test_labels_are_train_ids_or_ignore(labels):
    for label in labels:
        values = set(np.unique(label).tolist())
        assert values <= set(range(19)) | {IGNORE_INDEX}
        # 255 only marks the ego car's bonnet: a strip along the bottom, a small share.
        ignored = label == IGNORE_INDEX
        assert ignored.mean() < 0.15
        assert not ignored[: label.shape[0] // 2].any()


def test_every_class_appears_and_stuff_classes_in_most_scenes(labels):
    present = np.array([[np.any(label == c) for c in range(19)] for label in labels])
    share = present.mean(axis=0)
    missing = [CITYSCAPES.names[c] for c in range(19) if not present[:, c].any()]
    assert not missing, f"classes never drawn in 60 scenes: {missing}"
    for name in ("road", "sky", "building"):
        assert share[ID[name]] >= 0.9, f"{name} in only {share[ID[name]]:.0%} of scenes"


def test_scene_content_is_where_it_belongs(labels):
    """Road fills the bottom centre, sky sits above the horizon, never below the road."""
    for label in labels[:20]:
        h, w = label.shape
        bottom = label[int(0.8 * h), w // 2 - 10 : w // 2 + 10]
        assert np.isin(bottom, [ID["road"], IGNORE_INDEX, ID["car"], ID["truck"], ID["bus"], ID["train"], ID["motorcycle"],
                                ID["rider"], ID["bicycle"], ID["person"]]).all()
        sky_rows = np.nonzero((label == ID["sky"]).any(axis=1))[0]
        if len(sky_rows):
            assert sky_rows.max() < 0.6 * h


# -- styles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_styles_change_the_image_but_not_the_label(seed):
    clear, clear_label = render_scene(seed, SMALL, "clear")
    styled = {}
    for style in STYLES[1:]:
        image, label = render_scene(seed, SMALL, style)
        assert np.array_equal(label, clear_label), style
        assert np.abs(image.astype(int) - clear.astype(int)).mean() > 8, style
        styled[style] = image
    assert styled["night"].mean() < 0.5 * clear.mean()
    assert _local_contrast(styled["fog"]) < 0.75 * _local_contrast(clear)  # fog washes out edges
    assert styled["rain"].mean() < clear.mean()
    assert _colourfulness(styled["snow"]) < _colourfulness(clear)  # snow desaturates


def _local_contrast(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels' grey values."""
    grey = image.astype(float).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def _colourfulness(image: np.ndarray) -> float:
    """Mean distance of a pixel's channels from their grey average."""
    rgb = image.astype(float)
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())


def test_clip_is_temporally_coherent():
    frames = list(render_clip(5, 6, SMALL, "rain"))
    assert len(frames) == 6
    labels = [label for _, label in frames]
    agree_next = np.mean(labels[0] == labels[1])
    agree_far = np.mean(labels[0] == labels[5])
    assert agree_next > 0.8  # the same street a tenth of a second later
    assert agree_far < agree_next  # ... and it keeps moving
    assert not np.array_equal(labels[0], labels[1])


def test_target_scenes_use_other_seeds_than_source_scenes():
    source = {scene_seed(0, split, i) for split in ("train", "val") for i in range(100)}
    target = {scene_seed(0, cond, i) for cond in CONDITIONS for i in range(100)}
    assert len(source) == 200 and len(target) == 400 and not source & target


# -- writing ------------------------------------------------------------------------------------


def test_writes_cityscapes_and_acdc_layouts(tmp_path):
    calls = []

    def track(iterable, description, total):
        calls.append((description, total))
        return iterable

    summary = write_synthetic(tmp_path, train=3, val=2, target=2, size=SMALL, seed=7, workers=1, track=track)
    assert isinstance(summary, SyntheticSummary)
    assert (summary.train, summary.val, summary.target, summary.images) == (3, 2, 2, 13)
    assert summary.cityscapes == tmp_path / "cityscapes-synth" and summary.acdc == tmp_path / "acdc-synth"
    assert summary.video is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.train = 5  # type: ignore[misc]
    assert calls == [("Rendering synthetic street scenes", 13)]

    cs = file_contents(summary.cityscapes)
    expected = {
        "train": ["synthA/synthA_000000_000019", "synthB/synthB_000000_000019", "synthA/synthA_000001_000019"],
        "val": ["synthC/synthC_000000_000019", "synthC/synthC_000001_000019"],
    }
    names = {f"leftImg8bit/{split}/{stem}_leftImg8bit.png" for split, stems in expected.items() for stem in stems}
    names |= {f"gtFine/{split}/{stem}_gtFine_{kind}.png" for split, stems in expected.items() for stem in stems
              for kind in ("labelTrainIds", "instanceIds")}
    # Each root declares that it is scored at its own resolution (not resized like real Cityscapes).
    assert set(cs) == names | {"gkd-dataset.json"}

    acdc = file_contents(summary.acdc)
    names = set()
    for cond, seq in zip(CONDITIONS, ("GOPR0100", "GOPR0200", "GOPR0300", "GOPR0400")):
        for n in range(2):
            names.add(f"rgb_anon/{cond}/val/{seq}/{seq}_frame_{n:06d}_rgb_anon.png")
            names.add(f"gt/{cond}/val/{seq}/{seq}_frame_{n:06d}_gt_labelTrainIds.png")
            names.add(f"gt/{cond}/val/{seq}/{seq}_frame_{n:06d}_gt_instanceIds.png")
    names.add("gkd-dataset.json")
    assert set(acdc) == names

    pairs = [(p, Path(str(p).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")))
             for p in summary.cityscapes.glob("leftImg8bit/*/*/*.png")]
    pairs += [(p, Path(str(p).replace("rgb_anon", "gt", 1).replace("_rgb_anon.png", "_gt_labelTrainIds.png")))
              for p in summary.acdc.glob("rgb_anon/*/val/*/*.png")]
    assert len(pairs) == 13
    for image_path, label_path in pairs:
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (128, 256, 3) and image.dtype == np.uint8
        assert label.shape == (128, 256) and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) <= set(range(19)) | {IGNORE_INDEX}

    # The written source image is exactly render_scene's, from the documented seed.
    image, label = render_scene(scene_seed(7, "train", 0), SMALL)
    written = cv2.imread(str(summary.cityscapes / "leftImg8bit/train/synthA/synthA_000000_000019_leftImg8bit.png"))
    assert np.array_equal(written, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    # A re-run over the same folder replaces everything: no stale files from the bigger run.
    write_synthetic(tmp_path, train=1, val=0, target=1, size=SMALL, seed=7, workers=1)
    # image, train-id label and instance ids per image, + gkd-dataset.json
    assert len(file_contents(tmp_path / "cityscapes-synth")) == 3 + 1
    assert len(file_contents(tmp_path / "acdc-synth")) == 4 * 3 + 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_output_is_the_same_for_one_or_two_workers(tmp_path):
    one = write_synthetic(tmp_path / "one", train=2, val=1, target=1, size=SMALL, seed=3, workers=1)
    two = write_synthetic(tmp_path / "two", train=2, val=1, target=1, size=SMALL, seed=3, workers=2)
    for a, b in ((one.cityscapes, two.cityscapes), (one.acdc, two.acdc)):
        files_a, files_b = file_contents(a), file_contents(b)
        assert files_a.keys() == files_b.keys() and len(files_a) > 0
        assert all(files_a[k] == files_b[k] for k in files_a)


def test_writes_a_video_that_reopens_with_the_right_frames(tmp_path):
    summary = write_synthetic(tmp_path, train=0, val=0, target=0, size=SMALL, video=True, video_frames=7,
                              video_style="night", workers=1)
    assert summary.video == tmp_path / "video" / "synth-night.mp4" and summary.video.is_file()
    assert not summary.cityscapes.exists() and not summary.acdc.exists()  # video only
    cap = cv2.VideoCapture(str(summary.video))
    assert cap.isOpened()
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 7
    assert all(f.shape == (128, 256, 3) for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the camera moved


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"train": -1}, "train"),
        ({"val": 2.5}, "val"),
        ({"target": -3}, "target"),
        ({"size": (250, 128)}, "multiple of 8"),
        ({"size": (0, 128)}, "positive"),
        ({"size": (256,)}, "size"),
        ({"seed": -1}, "seed"),
        ({"video": True, "video_style": "hail"}, "video_style"),
        ({"video": True, "video_frames": 0}, "video_frames"),
        ({"workers": 0}, "workers"),
        ({"track": "progress"}, "track"),
        ({"train": 0, "val": 0, "target": 0}, "nothing to write"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_the_field(tmp_path, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        write_synthetic(tmp_path, **kwargs)
    assert not (tmp_path / "cityscapes-synth").exists()


def test_render_scene_checks_its_arguments():
    with pytest.raises(ConfigError, match="style"):
        render_scene(0, SMALL, "hail")
    with pytest.raises(ConfigError, match="multiple of 8"):
        render_scene(0, (100, 60))
    with pytest.raises(ConfigError, match="seed"):
        render_scene(-5, SMALL)


def test_proxy_images_are_other_scenes_in_random_looks_without_labels(tmp_path):
    from gkd_deploy.data.registry import build_domains, parse_dataset_arg

    summary = write_synthetic(tmp_path, train=0, val=0, target=0, proxy=3, size=SMALL, seed=2, workers=1)
    assert summary.proxy == tmp_path / "proxy-synth" and summary.proxy_images == 3 and summary.images == 3
    assert not summary.cityscapes.exists()  # a proxy-only call writes nothing else
    assert sorted(p.name for p in (summary.proxy / "images").iterdir()) == [f"proxy_{i:06d}.png" for i in range(3)]
    (domain,) = build_domains(parse_dataset_arg(f"images={summary.proxy}"), "train").values()
    assert len(domain) == 3 and not domain.labeled
    # The random look keeps the geometry (labels) and changes colours, but adds no weather: no haze,
    # darkness or snow cover, so the image keeps about the clear frame's local contrast.
    for seed in range(3):
        clear, clear_label = render_scene(seed, SMALL, "clear")
        random_look, label = render_scene(seed, SMALL, "random")
        assert np.array_equal(label, clear_label)
        assert not np.array_equal(random_look, clear)
        assert 0.5 < _local_contrast(random_look) / _local_contrast(clear) < 2.0
