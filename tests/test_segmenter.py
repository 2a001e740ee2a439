import json

import pytest
import torch
from safetensors.torch import save_file

from gkd_deploy.data.classes import ISPRS
from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.models.checkpoint import load_segmenter, read_checkpoint_metadata, save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter


@pytest.mark.parametrize("batch,height,width", [(1, 64, 64), (2, 64, 128), (3, 128, 96)])
def test_segmenter_logits_at_input_resolution(batch, height, width):
    model = build_segmenter(SegmenterConfig("tiny-student", img_size=128)).eval()
    assert model(torch.rand(batch, 3, height, width) * 255).shape == (batch, 19, height, width)


def test_checkpoint_rebuilds_the_model_alone(tmp_path):
    config = SegmenterConfig("tiny-student", img_size=64, feature_blocks=(1, 3), class_set=ISPRS)
    model = build_segmenter(config).eval()
    path = save_segmenter(model, tmp_path / "ckpt" / "seg.safetensors", extra={"step": 7})
    restored = load_segmenter(path).eval()
    assert restored.config == config
    assert restored.num_classes == 6
    images = torch.rand(2, 3, 64, 64) * 255
    assert torch.equal(restored(images), model(images))
    metadata = read_checkpoint_metadata(path)
    assert json.loads(metadata["gkd_extra"]) == {"step": 7}
    assert not list(path.parent.glob("*.tmp")), "atomic write left a temporary file"


def test_foreign_and_corrupt_checkpoints_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(plain))
    with pytest.raises(ModelError, match="not a gkd segmenter checkpoint"):
        load_segmenter(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_segmenter(garbage)
    with pytest.raises(ModelError, match="not found"):
        load_segmenter(tmp_path / "missing.safetensors")


def test_checkpoint_whose_weights_do_not_match_its_config(tmp_path):
    model = build_segmenter(SegmenterConfig("tiny-student", img_size=64))
    path = save_segmenter(model, tmp_path / "seg.safetensors")
    # Same weights, config claiming another architecture: the mismatch is named, not loaded.
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = handle.metadata()
    other = SegmenterConfig("tiny-teacher", img_size=64).to_dict()
    metadata["gkd_config"] = json.dumps(other)
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ModelError, match="does not match the architecture.*tiny-teacher"):
        load_segmenter(path)


def test_config_round_trip_and_validation():
    config = SegmenterConfig("tiny-student", feature_blocks=(0, 1, 2, 3))
    assert SegmenterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown field.*colour"):
        SegmenterConfig.from_dict({"encoder": "tiny-student", "colour": 1})
    with pytest.raises(ConfigError, match="'encoder' is missing"):
        SegmenterConfig.from_dict({"decoder": "linear"})
    with pytest.raises(ConfigError, match="unknown decoder 'fpn'"):
        build_segmenter(SegmenterConfig("tiny-student", decoder="fpn"))
