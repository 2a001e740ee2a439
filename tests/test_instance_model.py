"""The instance segmenter: shapes, config checks, a few training steps, checkpoints and their errors."""

from __future__ import annotations

import pytest
import torch

from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.instance import InstanceCriterion
from gkd_deploy.models.checkpoint import (load_instance_segmenter, load_model, load_segmenter, save_instance_segmenter,
                                          save_segmenter)
from gkd_deploy.models.instance_segmenter import InstanceSegmenterConfig, build_instance_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from tests.fixtures_sampling import PixelCentres, fit_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

SIZE = 64
#: A Mask2Former small enough for CPU tests (6 queries, 2 decoder layers, 32 wide).
SMALL_DECODER = {"hidden_dim": 32, "num_queries": 6, "dec_layers": 2, "pixel_layers": 1, "num_heads": 4,
                 "num_points_deform": 2, "dim_feedforward": 64, "pixel_ffn": 64, "groups": 4, "num_points": 256}


def tiny_config(**changes) -> InstanceSegmenterConfig:
    values = dict(encoder="tiny-student", neck="dpt", neck_channels=32, decoder_options=SMALL_DECODER,
                  img_size=SIZE, projection_dim=16, top_k=10)
    return InstanceSegmenterConfig(**{**values, **changes})


@pytest.mark.parametrize("neck", ["dpt", "pyramid"])
def test_forward_shapes(neck):
    model = build_instance_segmenter(tiny_config(neck=neck)).eval()
    images = torch.rand(2, 3, SIZE, SIZE) * 255
    class_logits, mask_logits = model(images)
    assert class_logits.shape == (2, 6, 8 + 1)  # 8 Cityscapes thing classes + no object
    assert mask_logits.shape == (2, 6, SIZE // 4, SIZE // 4)
    outputs = model.forward_train(images)
    assert outputs["pred_logits"].shape == (2, 6, 9) and len(outputs["aux_outputs"]) == 2
    embeddings = outputs["pixel_embeddings"]
    assert embeddings.shape == (2, 16, SIZE // 4, SIZE // 4)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2, SIZE // 4, SIZE // 4))
    masks, classes, scores = model.predict(images)
    assert masks.shape == (2, 10, SIZE, SIZE) and masks.dtype == torch.bool
    assert classes.shape == scores.shape == (2, 10) and classes.dtype == torch.int64
    assert int(classes.max()) < 8


def test_the_dpt_head_gives_a_stride_4_to_32_pyramid():
    from gkd_deploy.models.dpt import DPTHead

    maps = DPTHead(24, 16)([torch.randn(1, 24, 4, 6) for _ in range(4)])
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert all(m.shape[1] == 16 for m in maps)


def test_without_a_projection_head_there_are_no_embeddings():
    model = build_instance_segmenter(tiny_config(projection_dim=None))
    assert model.projection is None
    assert "pixel_embeddings" not in model.forward_train(torch.rand(1, 3, SIZE, SIZE) * 255)


@pytest.mark.parametrize(("change", "field"), [
    ({"neck": "fpn"}, "neck"), ({"decoder": "semfpn"}, "semfpn"), ({"top_k": 0}, "top_k"),
    ({"mask_threshold": 1.0}, "mask_threshold"), ({"projection_dim": 0}, "projection_dim"),
    ({"neck_channels": -1}, "neck_channels"), ({"encoder": ""}, "encoder"),
])
def test_a_bad_config_is_refused_when_made(change, field):
    with pytest.raises(ConfigError, match=field):
        tiny_config(**change)


def test_the_config_round_trips_through_its_dict():
    config = tiny_config(feature_blocks=(0, 1, 2, 3))
    assert InstanceSegmenterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown field"):
        InstanceSegmenterConfig.from_dict({**config.to_dict(), "colour": 1})


def test_a_few_training_steps_lower_the_loss_end_to_end():
    model = build_instance_segmenter(tiny_config()).train()
    criterion = InstanceCriterion(8, PixelCentres(SIZE // 4, SIZE // 4))
    images = torch.rand(2, 3, SIZE, SIZE) * 255
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, 8:40, 4:28] = True
    masks[1, 20:60, 30:62] = True
    instances = [(torch.tensor([2, 0]), torch.stack([masks[0], masks[1]])), (torch.tensor([5]), masks[1:])]
    encoder_before = model.encoder.backbone.blocks[0].attn.qkv.weight.detach().clone()
    losses = fit_losses(lambda: model.forward_train(images), criterion, instances, model.parameters(), 6, 1e-3)
    assert losses[-1] < 0.8 * losses[0], losses
    # The encoder trains too (unlike GKD's stage 3).
    assert not torch.equal(encoder_before, model.encoder.backbone.blocks[0].attn.qkv.weight)


def test_save_and_load_round_trip(tmp_path):
    model = build_instance_segmenter(tiny_config()).eval()
    path = save_instance_segmenter(model, tmp_path / "instance.safetensors", extra={"step": 3})
    loaded = load_instance_segmenter(path).eval()
    assert loaded.config == model.config
    images = torch.rand(1, 3, SIZE, SIZE) * 255
    with torch.no_grad():
        for expected, actual in zip(model(images), loaded(images)):
            torch.testing.assert_close(actual, expected)
    assert type(load_model(path)) is type(model)
    assert loaded.projection is not None  # the projection head is kept for training to resume


def test_a_checkpoint_of_the_other_task_is_refused_with_the_loader_to_use(tmp_path):
    instance = save_instance_segmenter(build_instance_segmenter(tiny_config()), tmp_path / "instance.safetensors")
    semantic_config = SegmenterConfig(encoder="tiny-student", decoder="linear", img_size=SIZE)
    semantic = save_segmenter(build_segmenter(semantic_config), tmp_path / "semantic.safetensors")
    with pytest.raises(ModelError, match="holds an instance segmenter, not a semantic segmenter.*load_instance_segmenter"):
        load_segmenter(instance)
    with pytest.raises(ModelError, match="holds a semantic segmenter, not an instance segmenter.*load_segmenter"):
        load_instance_segmenter(semantic)


def test_weights_of_another_instance_architecture_are_named(tmp_path):
    path = save_instance_segmenter(build_instance_segmenter(tiny_config()), tmp_path / "instance.safetensors")
    other = build_instance_segmenter(tiny_config(neck="pyramid"))
    from gkd_deploy.models.checkpoint import load_weights

    with pytest.raises(ModelError, match="tiny-student \\+ pyramid \\+ mask2former \\(instance\\)"):
        load_weights(other, path)
