import socket

import pytest
import timm
import torch
from safetensors.torch import save_file

from gkd_deploy.errors import ModelError, WeightsError
from gkd_deploy.models.builder import count_parameters, create_encoder
from gkd_deploy.models.encoder import default_feature_blocks
from gkd_deploy.models.registry import MODELS, ModelSpec, get_model_spec, list_model_specs

TINY_EVA = ModelSpec("tiny-eva", "eva02_small_patch14_224", ("teacher",), "random",
                     overrides={"embed_dim": 48, "depth": 2, "num_heads": 2}, has_weights=False)


def test_registry_covers_the_product_card():
    expected = {"dinov2-s", "dinov2-b", "dinov2-l", "dinov2-g", "dinov2-s-reg", "dinov2-b-reg", "dinov2-l-reg",
                "dinov2-g-reg", "eva02-s", "eva02-b", "eva02-l", "vit-t", "vit-s", "vit-b", "dino-s", "dino-b"}
    assert expected <= set(MODELS)
    # F2L students start from the distilled DeiT checkpoints, built as the plain ViT of that size.
    assert MODELS["vit-s"].timm_name == "deit_small_distilled_patch16_224.fb_in1k"
    assert MODELS["vit-s"].architecture == "deit_small_patch16_224"
    assert {"eva02-s", "eva02-b"} <= {s.name for s in list_model_specs("student")}
    assert {s.name for s in list_model_specs("student")} >= {"vit-t", "vit-s", "vit-b", "dino-s", "dino-b", "dinov2-s", "dinov2-b"}
    assert "dinov2-g" not in {s.name for s in list_model_specs("student")}
    for spec in MODELS.values():
        assert timm.is_model(spec.architecture), spec.name


def test_unknown_name_gets_did_you_mean():
    with pytest.raises(ModelError, match="Did you mean 'dinov2-b'"):
        get_model_spec("dinov2-bb")
    with pytest.raises(ModelError, match="timm has no model 'vit_smal_patch16_224'.*timm:vit_small_patch16_224"):
        get_model_spec("timm:vit_smal_patch16_224")
    with pytest.raises(ModelError, match="not registered as a student"):
        get_model_spec("dinov2-g", role="student")
    assert get_model_spec("timm:vit_small_patch16_224.augreg_in21k").architecture == "vit_small_patch16_224"


def test_parameter_counts_match_known_sizes():
    # DeiT-S 22.1M with its head; without the 1000-class head (384*1000+1000) it is 21.67M.
    assert count_parameters(MODELS["vit-s"]) == 21_665_664
    assert 85e6 < count_parameters(MODELS["dinov2-b"]) < 87e6
    assert 1.1e9 < count_parameters(MODELS["dinov2-g"]) < 1.2e9


@pytest.mark.parametrize("depth,blocks", [(12, (3, 5, 7, 11)), (24, (7, 11, 15, 23)), (4, (0, 1, 2, 3)), (40, (12, 19, 26, 39))])
def test_feature_blocks_spread_like_the_paper(depth, blocks):
    assert default_feature_blocks(depth) == blocks


@pytest.mark.parametrize("name", ["tiny-student", "tiny-teacher", TINY_EVA])
@pytest.mark.parametrize("height,width", [(64, 128), (96, 96)])
def test_encoder_outputs_share_one_token_grid(name, height, width):
    encoder = create_encoder(name, img_size=128).eval()
    images = torch.rand(2, 3, height, width) * 255
    tokens = encoder.forward_tokens(images)
    h, w = height // 16, width // 16
    assert tokens.shape == (2, 1 + h * w, encoder.embed_dim)
    maps = encoder.forward_features(images)
    assert len(maps) == len(encoder.feature_blocks)
    assert all(m.shape == (2, encoder.embed_dim, h, w) for m in maps)


def test_register_tokens_are_dropped():
    spec = ModelSpec("tiny-reg", "vit_small_patch14_reg4_dinov2", ("teacher",), "random",
                     overrides={"embed_dim": 48, "depth": 2, "num_heads": 2}, has_weights=False)
    encoder = create_encoder(spec, img_size=64)
    assert encoder.num_prefix_tokens == 5
    assert encoder.forward_tokens(torch.rand(1, 3, 64, 64) * 255).shape == (1, 1 + 16, 48)


def test_mask_token_lands_where_the_mask_says():
    encoder = create_encoder("tiny-student", img_size=64).eval()
    images = torch.rand(2, 3, 64, 64) * 255
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5, 15]] = True
    mask[1, [3]] = True
    clean, _ = encoder.embed(images)
    masked, _ = encoder.embed(images, mask)
    pos_embed = encoder.backbone.pos_embed[0, 1:]  # DeiT: class token first, then patches row-major
    expected = encoder.mask_token[0, 0] + pos_embed
    for b in range(2):
        for p in range(16):
            if mask[b, p]:
                torch.testing.assert_close(masked[b, 1 + p], expected[p])
            else:
                torch.testing.assert_close(masked[b, 1 + p], clean[b, 1 + p])
    # The class token never changes, and masking changes the final tokens.
    torch.testing.assert_close(masked[:, 0], clean[:, 0])
    assert not torch.allclose(encoder.forward_tokens(images, mask), encoder.forward_tokens(images))


def test_each_encoder_normalises_with_its_own_statistics():
    student = create_encoder("tiny-student", img_size=64)
    eva = create_encoder(TINY_EVA, img_size=64)
    assert student.pixel_mean.flatten().tolist() == pytest.approx([0.485 * 255, 0.456 * 255, 0.406 * 255])
    assert eva.pixel_mean.flatten().tolist() == pytest.approx([0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255])


def test_patch14_weights_resampled_to_patch16(tmp_path):
    source = timm.create_model("vit_small_patch14_dinov2", embed_dim=96, depth=4, num_heads=3, img_size=224, num_classes=0)
    path = tmp_path / "dinov2-tiny-p14.safetensors"
    save_file(source.state_dict(), str(path))
    encoder = create_encoder("tiny-teacher", weights=path, img_size=256, patch_size=16)
    assert encoder.backbone.patch_embed.proj.weight.shape == (96, 3, 16, 16)
    assert encoder.backbone.pos_embed.shape == (1, 1 + 16 * 16, 96)
    # The authors' kernel resize: plain bicubic interpolation of the 14 x 14 kernel (not timm's
    # pseudo-inverse resampling, which would keep the patch-embedding outputs instead).
    expected = torch.nn.functional.interpolate(source.patch_embed.proj.weight.detach(), size=(16, 16),
                                               mode="bicubic", align_corners=False)
    torch.testing.assert_close(encoder.backbone.patch_embed.proj.weight, expected)
    # Weights that do not depend on the patch size come through unchanged.
    torch.testing.assert_close(encoder.backbone.blocks[2].mlp.fc1.weight, source.blocks[2].mlp.fc1.weight)
    assert encoder.forward_tokens(torch.rand(1, 3, 256, 256) * 255).shape == (1, 257, 96)


def test_pth_weights_load(tmp_path):
    source = timm.create_model("deit_small_patch16_224", embed_dim=64, depth=4, num_heads=2, num_classes=0)
    path = tmp_path / "student.pth"
    torch.save({"model": source.state_dict()}, path)
    encoder = create_encoder("tiny-student", weights=path, img_size=224)
    torch.testing.assert_close(encoder.backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = timm.create_model("vit_small_patch14_dinov2", embed_dim=96, depth=4, num_heads=3, num_classes=0)
    path = tmp_path / "teacher.safetensors"
    save_file(other.state_dict(), str(path))
    with pytest.raises(WeightsError, match="do not fit 'tiny-student'"):
        create_encoder("tiny-student", weights=path)
    with pytest.raises(WeightsError, match="not found"):
        create_encoder("tiny-student", weights=tmp_path / "missing.safetensors")
    bad = tmp_path / "weights.txt"
    bad.write_text("hello")
    with pytest.raises(WeightsError, match="suffix"):
        create_encoder("tiny-student", weights=bad)


def test_pretrained_without_network_fails_fast_with_the_fix(monkeypatch, tmp_path):
    from huggingface_hub import constants

    # A closed local port: refused at once, as an offline machine refuses the hub.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsError, match="unreachable.*--weights PATH.*--no-pretrained"):
        create_encoder("vit-s")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        create_encoder("dinov2-s")


def test_non_vit_timm_model_is_refused():
    # A timm CNN is no student (students are ViTs); as a teacher it runs as a CNNEncoder.
    with pytest.raises(ModelError, match="teachers only"):
        create_encoder("timm:resnet18", pretrained=False, img_size=64, role="student")
    teacher = create_encoder("timm:resnet18", pretrained=False, img_size=64, role="teacher")
    assert teacher.forward_tokens(torch.rand(1, 3, 64, 64) * 255).shape == (1, 1 + 16, teacher.embed_dim)


def test_distilled_deit_loads_without_its_distillation_token(tmp_path):
    spec = ModelSpec("tiny-distilled", "deit_small_distilled_patch16_224", ("student",), "random",
                     overrides={"embed_dim": 64, "depth": 2, "num_heads": 2}, has_weights=False,
                     drops_distillation_token=True)
    source = timm.create_model("deit_small_distilled_patch16_224", embed_dim=64, depth=2, num_heads=2, num_classes=0)
    assert source.num_prefix_tokens == 2
    path = tmp_path / "deit-distilled.safetensors"
    save_file(source.state_dict(), str(path))
    encoder = create_encoder(spec, weights=path, img_size=224, patch_size=14)
    assert encoder.num_prefix_tokens == 1 and not hasattr(encoder.backbone, "dist_token")
    # Stage 1 runs the student at patch 14: 224 px -> 16 x 16 tokens, kernel resized 16 -> 14.
    assert encoder.grid_size(224, 224) == (16, 16)
    assert encoder.backbone.patch_embed.proj.weight.shape == (64, 3, 14, 14)
    source_pos = source.pos_embed.detach()
    torch.testing.assert_close(encoder.backbone.pos_embed[:, :1], source_pos[:, :1])  # the class slot is kept
    from gkd_deploy.models.patch_grid import resize_pos_embed

    # The distillation slot (index 1) is dropped before the 14 x 14 grid is interpolated to 16 x 16.
    torch.testing.assert_close(encoder.backbone.pos_embed, resize_pos_embed(
        torch.cat([source_pos[:, :1], source_pos[:, 2:]], 1), (16, 16), 1))
    torch.testing.assert_close(encoder.backbone.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert encoder.forward_tokens(torch.rand(1, 3, 224, 224) * 255).shape == (1, 1 + 256, 64)


def test_eva02_tokens_get_the_trained_final_norm():
    # timm's EVA-02 keeps its final norm in `fc_norm` (norm is Identity): tokens must pass through it.
    encoder = create_encoder(TINY_EVA, img_size=64).eval()
    assert isinstance(encoder.backbone.norm, torch.nn.Identity)
    with torch.no_grad():
        encoder.backbone.fc_norm.weight.fill_(2.0)
        encoder.backbone.fc_norm.bias.fill_(0.5)
        tokens = encoder.forward_tokens(torch.rand(2, 3, 64, 64) * 255)
    # LayerNorm with weight 2, bias 0.5: every token has mean 0.5 and (biased) std 2.
    torch.testing.assert_close(tokens.mean(-1), torch.full(tokens.shape[:2], 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(tokens.std(-1, unbiased=False), torch.full(tokens.shape[:2], 2.0), atol=1e-2, rtol=0)


def test_mask_token_starts_at_zero():
    assert torch.count_nonzero(create_encoder("tiny-student", img_size=64).mask_token) == 0


def test_our_own_encoder_checkpoint_is_accepted_as_weights_exactly(tmp_path):
    # A stage-2 student (keys "backbone.*" and the mask token, saved at 128 px) as --student-weights.
    from gkd_deploy.models.checkpoint import EncoderConfig, save_encoder

    trained = create_encoder("tiny-student", img_size=128)
    with torch.no_grad():
        trained.backbone.pos_embed.normal_()
    path = save_encoder(trained, tmp_path / "stage2-student.safetensors",
                        EncoderConfig("tiny-student", patch_size=16, img_size=128, feature_blocks=None))
    loaded = create_encoder("tiny-student", weights=path, img_size=128)
    # Loaded at the geometry it was saved at: no resampling round trip, every tensor exact.
    for key, value in trained.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_a_weights_file_that_does_not_fill_the_model_is_refused_with_the_keys(tmp_path):
    source = timm.create_model("deit_small_patch16_224", embed_dim=64, depth=4, num_heads=2, num_classes=0)
    renamed = {f"student.{key}": value for key, value in source.state_dict().items()}
    path = tmp_path / "renamed.safetensors"
    save_file(renamed, str(path))
    with pytest.raises(WeightsError, match=r"do not fit 'tiny-student'.*tensors missing \['cls_token'.*unexpected"):
        create_encoder("tiny-student", weights=path)
    partial = dict(list(source.state_dict().items())[:-4])  # a truncated export: the last block's norm etc.
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(WeightsError, match="4 of .* tensors missing"):
        create_encoder("tiny-student", weights=tmp_path / "partial.safetensors")


@pytest.mark.parametrize("name, payload", [("garbage.safetensors", b"not a safetensors file"),
                                           ("empty.safetensors", b""), ("garbage.pth", b"\x80\x04junk")])
def test_unreadable_weights_files_are_weights_errors(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(WeightsError, match=f"cannot read weights from .*{name}"):
        create_encoder("tiny-student", weights=path)


TINY_REG = ModelSpec("tiny-reg", "vit_small_patch14_reg4_dinov2", ("teacher",), "random",
                     overrides={"embed_dim": 48, "depth": 2, "num_heads": 2}, has_weights=False)


@pytest.mark.parametrize("name", ["tiny-student", TINY_REG, TINY_EVA])
def test_at_the_built_size_positions_are_timms_bit_for_bit(name):
    encoder = create_encoder(name, img_size=64).eval()
    backbone = encoder.backbone
    patches = backbone.patch_embed(torch.rand(2, 3, 64, 64))
    ours = backbone._pos_embed(patches)
    timms = type(backbone)._pos_embed(backbone, patches)
    for mine, theirs in zip(ours if isinstance(ours, tuple) else (ours,), timms if isinstance(timms, tuple) else (timms,)):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize("name", ["tiny-student", TINY_REG, TINY_EVA])
def test_below_the_built_size_positions_are_resized_once_the_authors_way(name):
    # Built at 128 px (an 8 x 8 grid), run at 64 x 96 (4 x 6): bicubic without antialiasing, the
    # resize weights get when loaded, where timm's dynamic path would antialias.
    encoder = create_encoder(name, img_size=128).eval()
    backbone = encoder.backbone
    num_prefix = 0 if backbone.no_embed_class else backbone.num_prefix_tokens
    grid = backbone.pos_embed[:, num_prefix:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 6), mode="bicubic", align_corners=False,
                                               antialias=False).permute(0, 2, 3, 1).reshape(1, 24, -1)
    patches = torch.zeros(1, 4, 6, encoder.embed_dim)
    ours = backbone._pos_embed(patches)
    tokens = ours[0] if isinstance(ours, tuple) else ours
    torch.testing.assert_close(tokens[:, backbone.num_prefix_tokens:], expected)
    timms = type(backbone)._pos_embed(backbone, patches)
    timm_tokens = timms[0] if isinstance(timms, tuple) else timms
    assert not torch.allclose(timm_tokens, tokens)  # timm antialiases when it shrinks a grid


@pytest.mark.parametrize("name", ["tiny-student", TINY_EVA])
def test_decoder_and_distillation_passes_agree_below_the_built_size(name):
    # forward_features (timm's forward_intermediates) and the distillation passes (our steps) now
    # share one position-embedding resize, so the block outputs they give are the same.
    encoder = create_encoder(name, img_size=128).eval()
    images = torch.rand(1, 3, 64, 96) * 255
    last = encoder.feature_blocks[-1]
    with torch.no_grad():
        maps = encoder.forward_features(images)
        _, (tokens,) = encoder.forward_block_tokens(images, [last])
    patches = tokens[:, 1:].reshape(1, 4, 6, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(maps[-1], patches, atol=1e-5, rtol=1e-5)
