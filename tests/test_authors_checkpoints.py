"""The GKD authors' released checkpoints (github Younger-hua/GKD) load into our models.

The files here are written with THEIR key names and layouts, taken from their code, not from our
mapping: the distillation checkpoint of `general_distillation/main.py` (`{'model': ...,
'args': Namespace, ...}`, the student under `student.backbone.` as `models_dinov2.py`'s
DinoVisionTransformer names it) and the mmseg task-learning checkpoint (`backbone.*` +
mmdet's Mask2FormerHead under `decode_head.*`).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from gkd_deploy.cli.app import main
from gkd_deploy.errors import WeightsError
from gkd_deploy.models.authors_mask2former import import_authors_checkpoint, import_authors_segmenter
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.checkpoint import load_segmenter, save_segmenter
from gkd_deploy.models.decoders.mask2former.position_encoding import sine_position_embedding
from gkd_deploy.models.patch_grid import resize_kernel, resize_pos_embed
from gkd_deploy.models.segmenter import Segmenter, SegmenterConfig, build_segmenter

WIDTH, DEPTH = 64, 4  # tiny-student: DeiT architecture, 64 wide, 4 blocks


class NotATensor:
    """A pickled object of a class torch's weights-only loader does not know."""


def dinov2_student(width: int, depth: int, patch: int, grid: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DinoVisionTransformer's tensors as the authors save them: init_values=None (no ls1/ls2),
    mlp FFN, block_chunks=0, no registers, a (1, C) mask token, pos_embed (1, 1 + grid^2, C)."""
    c, hidden = width, 4 * width
    shapes = {"cls_token": (1, 1, c), "pos_embed": (1, 1 + grid * grid, c), "mask_token": (1, c),
              "patch_embed.proj.weight": (c, 3, patch, patch), "patch_embed.proj.bias": (c,),
              "norm.weight": (c,), "norm.bias": (c,)}
    for i in range(depth):
        block = f"blocks.{i}."
        shapes.update({block + "norm1.weight": (c,), block + "norm1.bias": (c,),
                       block + "attn.qkv.weight": (3 * c, c), block + "attn.qkv.bias": (3 * c,),
                       block + "attn.proj.weight": (c, c), block + "attn.proj.bias": (c,),
                       block + "norm2.weight": (c,), block + "norm2.bias": (c,),
                       block + "mlp.fc1.weight": (hidden, c), block + "mlp.fc1.bias": (hidden,),
                       block + "mlp.fc2.weight": (c, hidden), block + "mlp.fc2.bias": (c,)})
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) * 0.1 for key, shape in shapes.items()}


def distillation_checkpoint(path: Path, student: dict[str, torch.Tensor], **args_extra) -> Path:
    """`general_distillation/main.py`'s save: the MetaArch state dict (student, teacher, QSD heads)
    under 'model', beside the optimizer, scheduler, EMA, scaler and the argparse Namespace."""
    teacher = dinov2_student(96, 2, 14, 16, seed=1)
    model = {f"student.backbone.{k}": v for k, v in student.items()}
    model.update({f"teacher.backbone.{k}": v for k, v in teacher.items()})
    for head in ("patch_head", "fea_head", "token_head"):
        for projection in ("proj_q", "proj_v"):
            model[f"{head}.{projection}.0.weight"] = torch.ones(WIDTH)
            model[f"{head}.{projection}.0.bias"] = torch.zeros(WIDTH)
            model[f"{head}.{projection}.1.weight"] = torch.zeros(96, WIDTH)
            model[f"{head}.{projection}.1.bias"] = torch.zeros(96)
    args = argparse.Namespace(model="distillation_models_deit", target_model="vit_small", patch_size=14,
                              input_size=224, lr=5e-4, mask_first_n=True, **args_extra)
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
                "lr_scheduler": {"t_initial": 100, "base_values": [5e-4]}, "epoch": 99,
                "model_ema": {k: v.clone() for k, v in student.items()}, "scaler": {"scale": 65536.0},
                "args": args}, path)
    return path


def run_gkd(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def one_error_line(code: int, err: str, message: str) -> None:
    assert code == 1 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --- the distillation checkpoint as --student-weights ------------------------------------------

def test_distillation_checkpoint_fills_the_student_exactly(tmp_path, caplog):
    student = dinov2_student(WIDTH, DEPTH, patch=16, grid=4)
    path = distillation_checkpoint(tmp_path / "checkpoint_300.pth", student)
    with caplog.at_level(logging.INFO, logger="gkd_deploy.models.authors_student"):
        encoder = create_encoder("tiny-student", weights=path, patch_size=16, img_size=64)
    # 55 student tensors taken; teacher (7 + 12 * 2 = 31) and QSD heads (3 x 2 x 4 = 24) left out.
    assert "took 55 tensors from 'student.backbone.'" in caplog.text
    assert "ignored 55 others (fea_head: 8, patch_head: 8, teacher.backbone: 31, token_head: 8)" in caplog.text
    ours = encoder.backbone.state_dict()
    for key, value in student.items():
        if key != "mask_token":
            torch.testing.assert_close(ours[key], value, rtol=0, atol=0)
    torch.testing.assert_close(encoder.mask_token, student["mask_token"].reshape(1, 1, WIDTH), rtol=0, atol=0)

    # The same numbers in our own encoder format (keys "backbone.*" + "mask_token") give the same model.
    own = {f"backbone.{k}": v for k, v in student.items() if k != "mask_token"}
    own["mask_token"] = student["mask_token"].reshape(1, 1, WIDTH)
    save_file(own, str(tmp_path / "own.safetensors"))
    reference = create_encoder("tiny-student", weights=tmp_path / "own.safetensors", patch_size=16, img_size=64)
    images = torch.rand(2, 3, 64, 64) * 255
    patch_mask = torch.zeros(2, 16, dtype=torch.bool)
    patch_mask[0, ::3] = True
    with torch.no_grad():
        torch.testing.assert_close(encoder.forward_tokens(images, patch_mask),
                                   reference.forward_tokens(images, patch_mask), rtol=0, atol=0)
        # And the same as the authors' own forward pass, written out: patch embed, mask token,
        # [cls] + patches + pos_embed, pre-norm blocks, final norm (models_dinov2.py).
        x = (images - encoder.pixel_mean) / encoder.pixel_std
        x = torch.nn.functional.conv2d(x, student["patch_embed.proj.weight"], student["patch_embed.proj.bias"],
                                       stride=16).flatten(2).transpose(1, 2)
        x = torch.where(patch_mask[..., None], student["mask_token"][None], x)
        x = torch.cat([student["cls_token"].expand(2, -1, -1), x], 1) + student["pos_embed"]
        for i in range(DEPTH):
            x = x + _authors_attention(x, student, i)
            x = x + _authors_mlp(x, student, i)
        expected = torch.nn.functional.layer_norm(x, (WIDTH,), student["norm.weight"], student["norm.bias"], 1e-6)
        torch.testing.assert_close(encoder.forward_tokens(images, patch_mask), expected, rtol=1e-4, atol=1e-4)


def _authors_attention(x: torch.Tensor, s: dict[str, torch.Tensor], i: int, heads: int = 2) -> torch.Tensor:
    b, n, c = x.shape
    p = f"blocks.{i}."
    h = torch.nn.functional.layer_norm(x, (c,), s[p + "norm1.weight"], s[p + "norm1.bias"], 1e-6)
    qkv = torch.nn.functional.linear(h, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attention = (q * (c // heads) ** -0.5 @ k.transpose(-2, -1)).softmax(-1)
    out = (attention @ v).transpose(1, 2).reshape(b, n, c)
    return torch.nn.functional.linear(out, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])


def _authors_mlp(x: torch.Tensor, s: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    p = f"blocks.{i}."
    h = torch.nn.functional.layer_norm(x, (x.shape[-1],), s[p + "norm2.weight"], s[p + "norm2.bias"], 1e-6)
    h = torch.nn.functional.gelu(torch.nn.functional.linear(h, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"]))
    return torch.nn.functional.linear(h, s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"])


def test_stage1_checkpoint_is_resized_to_the_students_patch_and_grid(tmp_path):
    # Stage 1 saves the student at 224 px and patch 14 (pos_embed 1 + 16^2); stage 3 runs it at
    # patch 16: the kernel is resized bicubically and the position grid interpolated, the class slot kept.
    student = dinov2_student(WIDTH, DEPTH, patch=14, grid=16)
    path = distillation_checkpoint(tmp_path / "checkpoint_100.pth", student)
    encoder = create_encoder("tiny-student", weights=path, patch_size=16, img_size=128)
    backbone = encoder.backbone
    torch.testing.assert_close(backbone.patch_embed.proj.weight, resize_kernel(student["patch_embed.proj.weight"], 16))
    torch.testing.assert_close(backbone.pos_embed, resize_pos_embed(student["pos_embed"], (8, 8), 1))
    torch.testing.assert_close(backbone.pos_embed[:, 0], student["pos_embed"][:, 0], rtol=0, atol=0)
    torch.testing.assert_close(backbone.blocks[3].mlp.fc2.weight, student["blocks.3.mlp.fc2.weight"], rtol=0, atol=0)
    assert encoder.forward_tokens(torch.rand(1, 3, 128, 128) * 255).shape == (1, 1 + 64, WIDTH)


def test_distilled_deit_student_takes_the_authors_plain_vit(tmp_path):
    # vit-t is a distilled DeiT in the zoo; the authors' student has no distillation token, so its
    # position embedding must not lose a slot (index 1 is a real patch position here).
    student = dinov2_student(192, 12, patch=16, grid=4)
    path = distillation_checkpoint(tmp_path / "deit-t-gkd.pth", student)
    encoder = create_encoder("vit-t", weights=path, patch_size=16, img_size=64)
    torch.testing.assert_close(encoder.backbone.pos_embed, student["pos_embed"], rtol=0, atol=0)
    torch.testing.assert_close(encoder.mask_token, student["mask_token"].reshape(1, 1, 192), rtol=0, atol=0)


def test_distillation_checkpoints_that_do_not_fit_are_refused_with_the_keys(tmp_path):
    wide = distillation_checkpoint(tmp_path / "wide.pth", dinov2_student(96, DEPTH, patch=16, grid=4))
    with pytest.raises(WeightsError, match=r"do not fit 'tiny-student'.*shapes differ: \['cls_token \(1, 1, 96\)"):
        create_encoder("tiny-student", weights=wide, img_size=64)
    partial = {k: v for k, v in dinov2_student(WIDTH, DEPTH, patch=16, grid=4).items() if not k.startswith("blocks.3.")}
    short = distillation_checkpoint(tmp_path / "short.pth", partial)
    with pytest.raises(WeightsError, match=r"12 of \d+ tensors missing \['blocks\.3\.norm1\.weight'"):
        create_encoder("tiny-student", weights=short, img_size=64)


def test_a_pickled_object_is_refused_not_run(tmp_path):
    path = distillation_checkpoint(tmp_path / "pickled.pth", dinov2_student(WIDTH, DEPTH, patch=16, grid=4),
                                   hook=NotATensor())
    with pytest.raises(WeightsError, match=r"pickled Python object \((\w+\.)*test_authors_checkpoints\.NotATensor\)"):
        create_encoder("tiny-student", weights=path, img_size=64)


@pytest.fixture(scope="module")
def source_data(tmp_path_factory) -> Path:
    from tests.fixtures_data import make_source_and_targets

    return make_source_and_targets(tmp_path_factory.mktemp("data"))


def _train_with(weights: Path, data: Path, out: Path) -> list[str]:
    return ["train", "--teacher", "tiny-teacher", "--student", "tiny-student", "--stages", "2,3",
            "--source", f"cityscapes={data / 'cityscapes'}", "--targets", f"acdc={data / 'acdc'}",
            "--student-weights", str(weights), "--device", "cpu", "--workers", "0", "--out", str(out)]


@pytest.mark.parametrize("case, message", [
    ("wide", "do not fit 'tiny-student'"),
    ("short", "tensors missing ['blocks.3.norm1.weight'"),
    ("pickled", "test_authors_checkpoints.NotATensor), and gkd-deploy unpickles tensors and plain containers only"),
])
def test_gkd_train_refuses_bad_student_weights_in_one_line(case, message, source_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    student = dinov2_student(96 if case == "wide" else WIDTH, DEPTH, patch=16, grid=4)
    if case == "short":
        student = {k: v for k, v in student.items() if not k.startswith("blocks.3.")}
    extra = {"hook": NotATensor()} if case == "pickled" else {}
    path = distillation_checkpoint(tmp_path / f"{case}.pth", student, **extra)
    code, err = run_gkd(_train_with(path, source_data, tmp_path / "run"), capsys)
    one_error_line(code, err, message)
    assert not (tmp_path / "run" / "checkpoints" / "stage2-student.safetensors").exists()


# --- the task-learning checkpoint (mmseg Mask2Former) -> gkd models import ----------------------

DECODER = {"hidden_dim": 64, "num_queries": 8, "dec_layers": 3, "pixel_layers": 2, "num_heads": 8,
           "num_points_deform": 4, "dim_feedforward": 96, "pixel_ffn": 80, "groups": 32}


def randomised_segmenter(encoder: str = "tiny-student", seed: int = 0) -> Segmenter:
    config = SegmenterConfig(encoder=encoder, decoder="mask2former",
                             decoder_options={**DECODER, "position_code": "mmdet"}, patch_size=16, img_size=64)
    model = build_segmenter(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def mmseg_state(model: Segmenter) -> dict[str, torch.Tensor]:
    """The model's numbers under the names mmseg/mmdet give them (EncoderDecoder with
    DinoVisionTransformer + Mask2FormerHead / MSDeformAttnPixelDecoder / ConvModule(conv, gn) /
    FFN(layers.0.0, layers.1) / MultiheadAttention(attn.*) / norms.i), written out module by module."""
    state = {f"backbone.{k}": v for k, v in model.encoder.backbone.state_dict().items()}
    state["backbone.mask_token"] = model.encoder.mask_token.reshape(1, -1)
    pixel, transformer = model.decoder.pixel_decoder, model.decoder.transformer
    head = {}

    def put(prefix: str, module: torch.nn.Module) -> None:
        head.update({f"{prefix}.{name}": value for name, value in module.state_dict().items()})

    def put_ffn_and_norms(base: str, layer: torch.nn.Module, norms: tuple[torch.nn.Module, ...]) -> None:
        # mmcv FFN: layers.0 = Sequential(Linear, ReLU, Dropout), layers.1 = Linear; LayerNorms in `norms`.
        put(f"{base}.ffn.layers.0.0", layer.linear1)
        put(f"{base}.ffn.layers.1", layer.linear2)
        for j, norm in enumerate(norms):
            put(f"{base}.norms.{j}", norm)

    for i, projection in enumerate(pixel.input_proj):
        put(f"pixel_decoder.input_convs.{i}.conv", projection[0])
        put(f"pixel_decoder.input_convs.{i}.gn", projection[1])
    for i, layer in enumerate(pixel.layers):
        base = f"pixel_decoder.encoder.layers.{i}"
        put(f"{base}.self_attn", layer.attention)
        put_ffn_and_norms(base, layer, (layer.norm1, layer.norm2))
    head["pixel_decoder.level_encoding.weight"] = pixel.level_embed
    put("pixel_decoder.lateral_convs.0.conv", pixel.lateral[0])
    put("pixel_decoder.lateral_convs.0.gn", pixel.lateral[1])
    put("pixel_decoder.output_convs.0.conv", pixel.output[0])
    put("pixel_decoder.output_convs.0.gn", pixel.output[1])
    put("pixel_decoder.mask_feature", pixel.mask_features)
    for i, layer in enumerate(transformer.layers):
        base = f"transformer_decoder.layers.{i}"
        put(f"{base}.cross_attn.attn", layer.cross_attention)
        put(f"{base}.self_attn.attn", layer.self_attention)
        put_ffn_and_norms(base, layer, (layer.norm1, layer.norm2, layer.norm3))
    put("transformer_decoder.post_norm", transformer.head.norm)
    put("query_feat", transformer.query_feat)
    put("query_embed", transformer.query_embed)
    put("level_embed", transformer.level_embed)
    put("cls_embed", transformer.head.class_embed)
    put("mask_embed", transformer.head.mask_embed)
    state.update({f"decode_head.{k}": v.detach().clone() for k, v in head.items()})
    return {k: v.detach().clone() for k, v in state.items()}


def mmseg_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """mmengine's CheckpointHook file: meta, state_dict, optimizer."""
    torch.save({"meta": {"mmengine_version": "0.10.3", "iter": 40000, "seed": 42,
                         "dataset_meta": {"classes": ("road", "sidewalk")}},
                "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.0}]}}, path)
    return path


def test_mmdet_sine_code_is_their_formula():
    # mmdet SinePositionalEncoding(num_feats=D/2, normalize=True), offset 0: cumsum of ones
    # (1..n) / (n + 1e-6) * 2 pi, sin/cos interleaved, rows then columns.
    height, width, dim = 3, 5, 8
    y = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    y, x = y / (height + 1e-6) * 2 * math.pi, x / (width + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(dim // 2) // 2) / (dim // 2))
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(-2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(-2)
    expected = torch.cat((pos_y, pos_x), dim=-1).reshape(height * width, dim)
    torch.testing.assert_close(sine_position_embedding(height, width, dim, code="mmdet"), expected)
    assert not torch.allclose(sine_position_embedding(height, width, dim), expected, atol=1e-2)


def test_mmseg_mask2former_imports_with_every_tensor_in_place(tmp_path):
    source = randomised_segmenter()
    state = mmseg_state(source)
    path = mmseg_checkpoint(tmp_path / "iter_40000.pth", state)
    imported = import_authors_segmenter(path, student="tiny-student").eval()
    assert imported.config.decoder_options == {**DECODER, "position_code": "mmdet"}
    assert imported.config.class_set.name == "cityscapes" and (imported.config.patch_size, imported.config.img_size) == (16, 64)
    decoder = imported.decoder
    pairs = {
        "decode_head.transformer_decoder.layers.1.cross_attn.attn.in_proj_weight":
            decoder.transformer.layers[1].cross_attention.in_proj_weight,
        "decode_head.transformer_decoder.layers.2.norms.1.bias": decoder.transformer.layers[2].norm2.bias,
        "decode_head.pixel_decoder.input_convs.2.gn.bias": decoder.pixel_decoder.input_proj[2][1].bias,
        "decode_head.pixel_decoder.encoder.layers.1.ffn.layers.1.weight": decoder.pixel_decoder.layers[1].linear2.weight,
        "decode_head.pixel_decoder.level_encoding.weight": decoder.pixel_decoder.level_embed,
        "decode_head.mask_embed.4.weight": decoder.transformer.head.mask_embed[4].weight,
        "decode_head.cls_embed.bias": decoder.transformer.head.class_embed.bias,
        "backbone.blocks.3.attn.qkv.weight": imported.encoder.backbone.blocks[3].attn.qkv.weight,
    }
    for theirs, ours in pairs.items():
        torch.testing.assert_close(ours, state[theirs], rtol=0, atol=0)
    torch.testing.assert_close(imported.encoder.mask_token.reshape(1, -1), state["backbone.mask_token"], rtol=0, atol=0)

    # The same numbers saved in our own format give the same outputs, exactly.
    own = load_segmenter(save_segmenter(source, tmp_path / "own.safetensors")).eval()
    images = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(imported(images), own(images), rtol=0, atol=0)


def test_the_student_is_found_from_the_backbone(tmp_path):
    state = mmseg_state(randomised_segmenter(encoder="vit-t"))
    imported = import_authors_segmenter(mmseg_checkpoint(tmp_path / "vit-t.pth", state))
    assert imported.config.encoder == "vit-t"  # the distilled DeiT-Ti, before dino/dinov2 specs


def test_heads_our_decoder_cannot_represent_are_refused_with_the_differences(tmp_path):
    state = mmseg_state(randomised_segmenter())
    projected = dict(state, **{"decode_head.decoder_input_projs.0.weight": torch.zeros(64, 64, 1, 1),
                               "decode_head.level_embed.weight": torch.zeros(4, 64)})
    with pytest.raises(WeightsError, match=r"transformer levels \(level_embed rows\): 4, ours 3; "
                                           r"decoder input projections \(decode_head"):
        import_authors_segmenter(mmseg_checkpoint(tmp_path / "projected.pth", projected), student="tiny-student")
    missing = {k: v for k, v in state.items() if k != "decode_head.transformer_decoder.layers.2.norms.1.weight"}
    with pytest.raises(WeightsError, match=r"1 missing \(decode_head\.transformer_decoder\.layers\.2\.norms\.1\.weight\)"):
        import_authors_segmenter(mmseg_checkpoint(tmp_path / "missing.pth", missing), student="tiny-student")
    layer_scale = dict(state, **{"backbone.blocks.0.ls1.gamma": torch.ones(WIDTH)})
    with pytest.raises(WeightsError, match=r"1 unexpected \(backbone\.blocks\.0\.ls1\.gamma\)"):
        import_authors_segmenter(mmseg_checkpoint(tmp_path / "ls.pth", layer_scale), student="tiny-student")
    with pytest.raises(WeightsError, match="distillation checkpoint.*--student-weights"):
        import_authors_segmenter(distillation_checkpoint(tmp_path / "distill.pth",
                                                         dinov2_student(WIDTH, DEPTH, patch=16, grid=4)))


def test_gkd_models_import_writes_a_segmenter_that_gives_the_same_outputs(tmp_path, capsys):
    source = randomised_segmenter()
    path = mmseg_checkpoint(tmp_path / "iter_40000.pth", mmseg_state(source))
    out = tmp_path / "imported" / "model.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "import", str(path), "--student", "tiny-student", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    assert str(out) in capsys.readouterr().out
    model = load_segmenter(out).eval()
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(images), source(images), rtol=0, atol=0)


@pytest.mark.parametrize("case, message", [
    ("wide", "55 of another shape (backbone.mask_token (1, 1, 96) vs ours (1, 1, 64), backbone.cls_token (1, 1, 96)"),
    ("short", "missing (decode_head.mask_embed.4.bias)"),
    ("pickled", "test_authors_checkpoints.NotATensor), and gkd-deploy unpickles tensors and plain containers only"),
])
def test_gkd_models_import_refuses_in_one_line_and_writes_nothing(case, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    state = mmseg_state(randomised_segmenter())
    path = tmp_path / f"{case}.pth"
    if case == "wide":
        wide = timm.create_model("deit_small_patch16_224", embed_dim=96, depth=DEPTH, num_heads=2, img_size=64,
                                 num_classes=0)
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        state.update({f"backbone.{k}": v.detach() for k, v in wide.state_dict().items()})
        state["backbone.mask_token"] = torch.zeros(1, 96)
    if case == "short":
        del state["decode_head.mask_embed.4.bias"]
    mmseg_checkpoint(path, state)
    if case == "pickled":
        torch.save({"meta": {"hook": NotATensor()}, "state_dict": state}, path)
    out = tmp_path / "model.safetensors"
    code, err = run_gkd(["models", "import", str(path), "--student", "tiny-student", "--out", str(out)], capsys)
    one_error_line(code, err, message)
    assert not out.exists()


def test_the_import_commands_help_names_the_authors_defaults():
    import typer

    from gkd_deploy.cli.app import app
    from gkd_deploy.models.authors_mask2former import AUTHORS_HEADS, AUTHORS_POINTS

    command = typer.main.get_command(app).commands["models"].commands["import"]
    helps = {param.name: getattr(param, "help", None) for param in command.params}
    assert f"the authors' {AUTHORS_HEADS})" in helps["num_heads"]
    assert f"the authors' {AUTHORS_POINTS})" in helps["num_points"]
