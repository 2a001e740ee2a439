import pytest
import torch

from gkd_deploy.errors import ConfigError
from gkd_deploy.evaluation.inference import InferenceMode, _window_starts, predict_logits


def per_pixel_model(images):
    """A pointwise function of the pixels: any window sees the same value at the same pixel."""
    return torch.stack([images[:, 0] * 0.5, images[:, 1] - images[:, 2], images.mean(1)], dim=1)


@pytest.mark.parametrize("height,width", [(64, 64), (50, 130), (200, 90)])
def test_slide_equals_whole_for_a_pointwise_model(height, width):
    images = torch.rand(2, 3, height, width)
    whole = predict_logits(per_pixel_model, images, InferenceMode("whole", crop=32, multiple=16))
    slide = predict_logits(per_pixel_model, images, InferenceMode("slide", crop=32, stride=21, multiple=16))
    assert whole.shape == slide.shape == (2, 3, height, width)
    torch.testing.assert_close(slide, whole)


def test_windows_cover_every_pixel_and_stay_inside():
    for length in (512, 1024, 2048, 700):
        starts = _window_starts(length, 512, 341)
        covered = torch.zeros(length)
        for start in starts:
            assert 0 <= start <= length - 512
            covered[start:start + 512] = 1
        assert covered.all()
    assert _window_starts(1024, 512, 341) == [0, 341, 512]


def test_slide_feeds_fixed_size_windows():
    seen = []

    def model(images):
        seen.append(tuple(images.shape[-2:]))
        return images[:, :2]

    predict_logits(model, torch.rand(1, 3, 100, 300), InferenceMode("slide", crop=64, stride=48, multiple=16))
    assert set(seen) == {(64, 64)}
    assert len(seen) == 2 * 6  # rows start at 0, 36; columns at 0, 48, ..., 192, 236


def test_bad_modes_are_refused():
    with pytest.raises(ConfigError, match="'whole' or 'slide'"):
        InferenceMode("tiles")
    with pytest.raises(ConfigError, match="stride"):
        InferenceMode("slide", crop=64, stride=96)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        InferenceMode("slide", crop=70, stride=30, multiple=16)


@pytest.mark.parametrize("window_batch", [2, 5, 64])
def test_batched_windows_give_the_same_logits(window_batch):
    # A model whose output depends on the whole window (its mean), so windows must not mix.
    def windowed(images):
        return images[:, :2] - images.mean(dim=(1, 2, 3), keepdim=True)

    images = torch.rand(2, 3, 70, 150)
    one = predict_logits(windowed, images, InferenceMode("slide", crop=32, stride=21, multiple=16))
    many = predict_logits(windowed, images, InferenceMode("slide", crop=32, stride=21, multiple=16,
                                                          window_batch=window_batch))
    torch.testing.assert_close(many, one, rtol=0, atol=1e-6)
