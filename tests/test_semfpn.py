"""SemFPN decoder and the ViT feature pyramid: shapes, strides, gradients, ONNX, the segmenter."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoders import DECODERS, SemFPNOptions
from gkd_deploy.models.decoders.semfpn import SemFPNDecoder
from gkd_deploy.models.pyramid import DEFAULT_SCALES, ViTPyramid, vit_pyramid
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

ENCODER_STRIDE = 16
SMALL = {"neck_channels": 32, "head_channels": 16, "groups": 4}


def small_decoder(in_channels: int = 24, num_classes: int = 5, **options) -> SemFPNDecoder:
    return SemFPNDecoder(in_channels, 4, num_classes, SemFPNOptions(**{**SMALL, **options}))


def encoder_maps(batch: int, height: int, width: int, channels: int = 24) -> list[torch.Tensor]:
    """Four stand-in block outputs of a stride-16 encoder for a (height, width) input."""
    h, w = height // ENCODER_STRIDE, width // ENCODER_STRIDE
    return [torch.randn(batch, channels, h, w) for _ in range(4)]


# --- pyramid -------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(4, 4), (6, 10), (8, 16), (5, 7)])
def test_pyramid_resizes_by_4_2_1_half(h, w):
    maps = [torch.randn(2, 3, h, w) for _ in range(4)]
    levels = vit_pyramid(maps)
    assert DEFAULT_SCALES == (4.0, 2.0, 1.0, 0.5)
    assert [tuple(level.shape) for level in levels] == [
        (2, 3, 4 * h, 4 * w), (2, 3, 2 * h, 2 * w), (2, 3, h, w), (2, 3, h // 2, w // 2)
    ]
    # x1 is the block output itself; the others are bilinear with align_corners=False.
    assert levels[2] is maps[2]
    for level, source, scale in zip(levels, maps, DEFAULT_SCALES):
        expected = F.interpolate(source, scale_factor=scale, mode="bilinear", align_corners=False)
        torch.testing.assert_close(level, expected, rtol=0, atol=0)


def test_pyramid_half_is_a_2x2_average_on_even_maps_and_has_no_parameters():
    source = torch.randn(1, 3, 8, 12)
    half = vit_pyramid([source] * 4)[3]
    torch.testing.assert_close(half, F.avg_pool2d(source, 2))
    # Upsampling x4 of a constant map stays constant (no learned layer, no border artefact).
    constant = torch.full((1, 2, 3, 5), 7.0)
    torch.testing.assert_close(vit_pyramid([constant] * 4)[0], torch.full((1, 2, 12, 20), 7.0))
    assert list(ViTPyramid().parameters()) == []


def test_pyramid_needs_one_scale_per_map():
    with pytest.raises(ValueError, match="3 feature maps but 4 scales"):
        vit_pyramid([torch.randn(1, 3, 4, 4)] * 3)


# --- decoder shapes and stride -------------------------------------------------------------------

@pytest.mark.parametrize("batch,height,width", [(1, 64, 64), (2, 96, 160), (3, 128, 256), (2, 80, 112)])
def test_semfpn_logits_at_stride_4(batch, height, width):
    decoder = small_decoder().eval()
    with torch.no_grad():
        logits = decoder(encoder_maps(batch, height, width))
    assert logits.shape == (batch, 5, height // 4, width // 4)
    assert torch.isfinite(logits).all()


def test_semfpn_structure_follows_the_head_recipe():
    decoder = SemFPNDecoder(384, 4, 19)
    convs = [sum(isinstance(m, nn.Conv2d) for m in head) for head in decoder.scale_heads]
    upsamples = [sum(isinstance(m, nn.Upsample) for m in head) for head in decoder.scale_heads]
    assert convs == [1, 1, 2, 3]  # stride 4, 8, 16, 32
    assert upsamples == [0, 1, 2, 3]
    norms = [m for m in decoder.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 7 and all(n.num_groups == 32 and n.num_channels == 128 for n in norms)
    assert all(c.out_channels == 256 for c in [*decoder.lateral_convs, *decoder.fpn_convs])
    assert decoder.dropout.p == 0.1
    assert decoder.classifier.in_channels == 128 and decoder.classifier.out_channels == 19


def test_semfpn_parameter_count_vit_s():
    decoder = SemFPNDecoder(384, 4, 19)
    count = sum(p.numel() for p in decoder.parameters())
    # Derived: laterals 4*(384*256+256) + fpn convs 4*(256*256*9+256) + head convs
    # 4*256*128*9 + 3*128*128*9 (bias-free) + 7 GroupNorms * 2*128 + classifier 128*19+19.
    expected = 4 * (384 * 256 + 256) + 4 * (256 * 256 * 9 + 256) + 4 * 256 * 128 * 9 + 3 * 128 * 128 * 9 + 7 * 256 + 128 * 19 + 19
    print(f"SemFPN (ViT-S, 384 wide, 19 classes) parameters: {count:,}")
    assert count == expected


def test_semfpn_eval_is_deterministic_and_batch_independent():
    decoder = small_decoder().eval()
    maps = encoder_maps(3, 64, 96)
    with torch.no_grad():
        full = decoder(maps)
        again = decoder(maps)
        first = decoder([m[:1] for m in maps])
    assert torch.equal(full, again)
    torch.testing.assert_close(full[:1], first, rtol=1e-5, atol=1e-5)


def test_semfpn_gradients_reach_every_parameter():
    decoder = small_decoder(dropout=0.0).train()
    maps = [m.requires_grad_() for m in encoder_maps(2, 64, 96)]
    target = torch.randint(0, 5, (2, 16, 24))
    F.cross_entropy(decoder(maps), target).backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_semfpn_rejects_bad_options():
    with pytest.raises(ConfigError, match="'head_channels' \\(24\\) must be divisible by 'groups' \\(32, the GroupNorm groups\\)"):
        SemFPNOptions(head_channels=24)
    with pytest.raises(ValueError, match="2 encoder feature maps but 4 pyramid scales"):
        SemFPNDecoder(64, 2, 19)
    with pytest.raises(ConfigError, match="'scales' must be powers-of-two fractions"):
        SemFPNOptions(scales=(4.0, 3.0, 1.0, 0.5))
    with pytest.raises(ConfigError, match="'dropout' must be in \\[0, 1\\)"):
        SemFPNOptions(dropout=1.0)


def test_semfpn_with_two_levels_and_custom_scales():
    decoder = SemFPNDecoder(24, 2, 3, SemFPNOptions(scales=(2.0, 1.0), **SMALL)).eval()
    logits = decoder([torch.randn(1, 24, 4, 6), torch.randn(1, 24, 4, 6)])
    assert logits.shape == (1, 3, 8, 12)


# --- ONNX ------------------------------------------------------------------------------------------

class _Positional(nn.Module):
    """The decoder with its maps as separate inputs, as ONNX graphs take them."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, m0, m1, m2, m3):
        return self.decoder([m0, m1, m2, m3])


# The legacy (TorchScript) exporter is the one asked for and warns that it is deprecated;
# GroupNorm's batch-size sanity check inside PyTorch raises a harmless TracerWarning.
_EXPORT_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")


@_EXPORT_WARNINGS
@pytest.mark.parametrize("height,width", [(64, 96), (80, 112)])
def test_semfpn_onnx_export_matches_pytorch(tmp_path, height, width):
    decoder = small_decoder().eval()
    module = _Positional(decoder).eval()
    names = [f"map{i}" for i in range(4)]
    path = tmp_path / "semfpn.onnx"
    torch.onnx.export(
        module, tuple(encoder_maps(2, height, width)), str(path), opset_version=17, dynamo=False,
        input_names=names, output_names=["logits"],
        dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        maps = encoder_maps(batch, height, width)
        with torch.no_grad():
            expected = decoder(maps).numpy()
        (got,) = session.run(None, {n: m.numpy() for n, m in zip(names, maps)})
        assert got.shape == expected.shape == (batch, 5, height // 4, width // 4)
        assert np.abs(got - expected).max() < 1e-4


# --- through the segmenter ----------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 2])
def test_segmenter_with_semfpn(monkeypatch, batch):
    assert DECODERS["semfpn"] is SemFPNDecoder
    config = SegmenterConfig("tiny-student", decoder="semfpn", img_size=64, decoder_options=dict(SMALL))
    model = build_segmenter(config).eval()
    assert isinstance(model.decoder, SemFPNDecoder)
    with torch.no_grad():
        logits = model(torch.rand(batch, 3, 64, 64) * 255)
        decoder_logits = model.decoder(model.encoder.forward_features(torch.rand(batch, 3, 64, 64) * 255))
    assert logits.shape == (batch, 19, 64, 64)
    assert decoder_logits.shape == (batch, 19, 16, 16)  # stride 4 before the segmenter's resize


@_EXPORT_WARNINGS
def test_segmenter_with_semfpn_exports_to_onnx_with_a_dynamic_batch(monkeypatch, tmp_path):
    assert DECODERS["semfpn"] is SemFPNDecoder
    config = SegmenterConfig("tiny-student", decoder="semfpn", img_size=64, decoder_options=dict(SMALL))
    model = build_segmenter(config).eval()
    path = tmp_path / "segmenter.onnx"
    torch.onnx.export(
        model, (torch.rand(2, 3, 64, 64) * 255,), str(path), opset_version=17, dynamo=False,
        input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.rand(batch, 3, 64, 64) * 255
        with torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(None, {"images": images.numpy()})
        assert got.shape == (batch, 19, 64, 64)
        assert np.abs(got - expected).max() < 1e-4
