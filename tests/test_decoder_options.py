"""Decoder options: one frozen dataclass per decoder, checked when a config is read; configs keep
the mapping form files store, and files written with it load as before."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest
import torch
from safetensors.torch import save_file

from gkd_deploy.errors import ConfigError
from gkd_deploy.models.config import InstanceSegmenterConfig, SegmenterConfig
from gkd_deploy.models.decoder_options import (
    DECODER_OPTIONS,
    EDGE_PRESET,
    PRESETS,
    LinearOptions,
    Mask2FormerOptions,
    SemFPNOptions,
    resolve_decoder_options,
)

SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}


# --- each options class -----------------------------------------------------------------------------

@pytest.mark.parametrize("options_class,values,message", [
    (SemFPNOptions, {"neck_channels": 0}, "semfpn option 'neck_channels' must be a positive integer, got 0"),
    (SemFPNOptions, {"head_channels": 64.0}, "'head_channels' must be an integer, got 64.0"),
    (SemFPNOptions, {"groups": True}, "'groups' must be an integer, got True"),
    (SemFPNOptions, {"head_channels": 24}, "'head_channels' \\(24\\) must be divisible by 'groups' \\(32"),
    (SemFPNOptions, {"dropout": 1.0}, "'dropout' must be in \\[0, 1\\), got 1.0"),
    (SemFPNOptions, {"dropout": "0.1"}, "'dropout' must be a finite number"),
    (SemFPNOptions, {"scales": "4,2,1"}, "'scales' must be a list of finite numbers"),
    (Mask2FormerOptions, {"dice_weight": float("nan")}, "'dice_weight' must be a finite number"),
    (SemFPNOptions, {"scales": []}, "'scales' must be a non-empty list"),
    (SemFPNOptions, {"scales": [4, 4, 1]}, "'scales' must be strictly decreasing"),
    (SemFPNOptions, {"scales": [4, 3]}, "'scales' must be powers-of-two fractions"),
    (Mask2FormerOptions, {"num_queries": 0}, "mask2former option 'num_queries' must be a positive integer"),
    (Mask2FormerOptions, {"dec_layers": -1}, "'dec_layers' must be >= 0, got -1"),
    (Mask2FormerOptions, {"hidden_dim": 36, "groups": 4}, "'hidden_dim' \\(36\\) must be divisible by 'num_heads'"),
    (Mask2FormerOptions, {"hidden_dim": 48, "num_heads": 4}, "'hidden_dim' \\(48\\) must be divisible by 'groups'"),
    (Mask2FormerOptions, {"hidden_dim": 6, "num_heads": 2, "groups": 2}, "'hidden_dim' must be a multiple of 4"),
    (Mask2FormerOptions, {"position_code": "center"}, "'position_code' must be one of centre, mmdet"),
    (Mask2FormerOptions, {"oversample_ratio": 0.5}, "'oversample_ratio' must be >= 1"),
    (Mask2FormerOptions, {"importance_sample_ratio": 1.5}, "'importance_sample_ratio' must be in \\[0, 1\\]"),
    (Mask2FormerOptions, {"no_object_weight": -0.1}, "'no_object_weight' must be >= 0"),
])
def test_each_options_class_rejects_a_bad_value_naming_the_field(options_class, values, message):
    with pytest.raises(ConfigError, match=message):
        options_class(**values)


def test_options_normalise_types_and_are_frozen():
    options = SemFPNOptions(dropout=0, scales=[2, 1])  # as YAML or JSON give them
    assert options.dropout == 0.0 and isinstance(options.dropout, float)
    assert options.scales == (2.0, 1.0) and options.upsampling_steps() == [0, 1]
    with pytest.raises(AttributeError):
        options.groups = 8  # type: ignore[misc]
    assert LinearOptions().to_dict() == {}
    # Every decoder has an options class; a preset names one of them.
    assert set(DECODER_OPTIONS) == {"linear", "semfpn", "mask2former"}
    assert all(decoder in DECODER_OPTIONS for decoder, _ in PRESETS.values())


def test_a_preset_plus_overrides():
    edge = resolve_decoder_options("mask2former-edge")
    assert edge == Mask2FormerOptions(**EDGE_PRESET) and edge.hidden_dim == 128 and edge.num_points == 12544
    tuned = resolve_decoder_options("mask2former-edge", {"num_queries": 20, "hidden_dim": 64})
    assert (tuned.num_queries, tuned.hidden_dim, tuned.dec_layers) == (20, 64, EDGE_PRESET["dec_layers"])
    # An override is checked with the preset's values: 4 heads divide 64, 32 groups do not divide 48.
    with pytest.raises(ConfigError, match="^x: mask2former option 'hidden_dim' \\(48\\) must be divisible by 'groups'"):
        resolve_decoder_options("mask2former-edge", {"hidden_dim": 48}, "x")


def test_unknown_names_get_did_you_mean():
    with pytest.raises(ConfigError, match="^opts: the mask2former-edge decoder has no option 'num_querys' "
                                          "\\(did you mean 'num_queries'\\?\\); it takes hidden_dim, "):
        resolve_decoder_options("mask2former-edge", {"num_querys": 3}, "opts")
    with pytest.raises(ConfigError, match="has no option 'multiscale_inputs'"):  # set from the neck, not by users
        resolve_decoder_options("mask2former", {"multiscale_inputs": True})
    with pytest.raises(ConfigError, match="unknown decoder 'semfnp' \\(did you mean 'semfpn'\\?\\)"):
        resolve_decoder_options("semfnp")
    with pytest.raises(ConfigError, match="takes SemFPNOptions, got Mask2FormerOptions"):
        resolve_decoder_options("semfpn", Mask2FormerOptions())


def test_round_trip_dict_typed_dict():
    options = resolve_decoder_options("semfpn", {**SMALL_FPN, "scales": [4, 2, 1, 0.5]})
    data = options.to_dict()
    assert [f.name for f in fields(SemFPNOptions)] == list(data)
    assert json.loads(json.dumps(data)) == data == {**SMALL_FPN, "dropout": 0.1, "scales": [4.0, 2.0, 1.0, 0.5]}
    assert SemFPNOptions.from_dict(data) == options
    m2f = Mask2FormerOptions(**EDGE_PRESET)
    assert Mask2FormerOptions.from_dict(json.loads(json.dumps(m2f.to_dict()))) == m2f


# --- the configs ----------------------------------------------------------------------------------

def test_configs_keep_the_given_mapping_and_expose_typed_options():
    given = {"groups": 8, "dropout": 0, "scales": [4, 2, 1, 0.5]}
    config = SegmenterConfig("tiny-student", decoder="semfpn", decoder_options=given)
    assert config.decoder_settings() == SemFPNOptions(groups=8, dropout=0.0)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["decoder_options"] == given  # only what was given, as it was given
    again = SegmenterConfig.from_dict(data)
    assert again == config and json.dumps(again.to_dict()) == json.dumps(config.to_dict())
    instance = InstanceSegmenterConfig("tiny-student", decoder="mask2former-edge", decoder_options={"num_queries": 10})
    assert instance.decoder_settings() == Mask2FormerOptions(**{**EDGE_PRESET, "num_queries": 10})
    assert InstanceSegmenterConfig.from_dict(json.loads(json.dumps(instance.to_dict()))) == instance


def test_an_options_object_given_to_a_config_is_stored_as_its_mapping():
    options = SemFPNOptions(**SMALL_FPN)
    config = SegmenterConfig("tiny-student", decoder="semfpn", decoder_options=options)  # type: ignore[arg-type]
    assert config.decoder_options == options.to_dict() and config.decoder_settings() == options
    assert SegmenterConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="the linear decoder takes LinearOptions, got SemFPNOptions"):
        SegmenterConfig("tiny-student", decoder="linear", decoder_options=options)  # type: ignore[arg-type]


def test_bad_options_fail_when_a_config_is_made():
    with pytest.raises(ConfigError, match="^segmenter config: decoder_options: semfpn option 'head_channels' \\(24\\)"):
        SegmenterConfig.from_dict({"encoder": "tiny-student", "decoder": "semfpn",
                                   "decoder_options": {"head_channels": 24}})
    with pytest.raises(ConfigError, match="decoder_options must be a mapping"):
        SegmenterConfig("tiny-student", decoder="semfpn", decoder_options=[4])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^instance segmenter config: decoder_options: mask2former option "
                                          "'importance_sample_ratio'"):
        InstanceSegmenterConfig("tiny-student", decoder_options={"importance_sample_ratio": 2})


def test_a_bad_value_in_a_training_config_fails_at_train_config_creation():
    """Not when stage 3 builds the decoder, after the distillation stages ran."""
    from gkd_deploy.training.config import TrainConfig, load_train_config

    base = {"stages": [3], "source": "cityscapes=/data/cs", "teacher": None}
    with pytest.raises(ConfigError, match="^stage3.decoder_options: semfpn option 'dropout' must be in \\[0, 1\\)"):
        TrainConfig.from_dict({**base, "stage3": {"decoder": "semfpn", "decoder_options": {"dropout": 1.5}}})
    with pytest.raises(ConfigError, match="^stage3.decoder_options: mask2former option 'num_heads' must be a positive"):
        load_train_config(overrides={**base, "stage3": {"decoder_options": {"num_heads": 0}}})  # the default decoder
    config = TrainConfig.from_dict({**base, "stage3": {"decoder": "semfpn", "decoder_options": SMALL_FPN}})
    assert config.stage3.decoder_settings() == SemFPNOptions(**SMALL_FPN)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # the run folder's form


def test_feature_maps_a_decoder_cannot_take_fail_when_the_config_is_read():
    from gkd_deploy.training.config import TrainConfig

    with pytest.raises(ConfigError, match="^segmenter config: the semfpn decoder takes 4 feature maps, but "
                                          "feature_blocks \\[1, 3\\] gives 2: give one scale per feature block"):
        SegmenterConfig("tiny-student", decoder="semfpn", feature_blocks=(1, 3))
    SegmenterConfig("tiny-student", decoder="semfpn", feature_blocks=(1, 3), decoder_options={"scales": [2, 1]})
    SegmenterConfig("tiny-student", decoder="linear", feature_blocks=(1, 3))  # any number
    with pytest.raises(ConfigError, match="the mask2former decoder takes 4 feature maps, .* give 4 feature blocks"):
        InstanceSegmenterConfig("tiny-student", neck="pyramid", feature_blocks=(0, 1, 2))
    base = {"stages": [3], "source": "cityscapes=/data/cs", "teacher": None}
    with pytest.raises(ConfigError, match="^stage3.decoder_options: the semfpn decoder takes 2 feature maps, but "
                                          "the stage-3 encoder gives 4"):
        TrainConfig.from_dict({**base, "stage3": {"decoder": "semfpn", "decoder_options": {"scales": [2, 1]}}})


def test_a_bad_value_in_an_instance_training_config_fails_when_it_is_read():
    from gkd_deploy.sskd.config import InstanceTrainConfig

    model = {"encoder": "tiny-student", "decoder": "mask2former-edge", "decoder_options": {"groups": 5}}
    with pytest.raises(ConfigError, match="^student.decoder_options: mask2former option 'hidden_dim' \\(128\\) "
                                          "must be divisible by 'groups' \\(5"):
        InstanceTrainConfig.from_dict({"teacher": {"encoder": "tiny-teacher"}, "student": model,
                                       "source": "cityscapes=/data/cs", "pretrained": False})


# --- files written with the mapping form ---------------------------------------------------------

# A checkpoint's config as gkd-deploy wrote it before the options were typed: JSON, lists for tuples,
# ints for floats, only the options given (the class set's JSON follows, from `old_config`).
OLD_CONFIG = ('{"encoder": "tiny-student", "decoder": "semfpn", "decoder_options": {"neck_channels": 32, '
              '"head_channels": 16, "groups": 4, "dropout": 0, "scales": [4, 2, 1, 0.5]}, "patch_size": 16, '
              '"img_size": 64, "feature_blocks": null}')


def old_config() -> dict:
    from gkd_deploy.data.classes import CITYSCAPES, class_set_to_dict

    return {**json.loads(OLD_CONFIG), "class_set": class_set_to_dict(CITYSCAPES)}


def test_an_old_style_checkpoint_still_loads(tmp_path):
    from gkd_deploy.models.checkpoint import load_segmenter, read_checkpoint_metadata, save_segmenter
    from gkd_deploy.models.segmenter import build_segmenter

    data = old_config()
    torch.manual_seed(0)
    reference = build_segmenter(SegmenterConfig.from_dict(data)).eval()
    path = tmp_path / "old.safetensors"
    state = {name: tensor.contiguous() for name, tensor in reference.state_dict().items()}
    save_file(state, str(path), metadata={"gkd_format": "gkd-segmenter", "gkd_version": "0.1.0",
                                          "gkd_config": json.dumps(data), "gkd_extra": "{}"})
    model = load_segmenter(path).eval()
    assert model.config.to_dict() == data  # the stored form, unchanged
    assert model.decoder.options == SemFPNOptions(**SMALL_FPN, dropout=0.0)
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))
    resaved = save_segmenter(model, tmp_path / "again.safetensors")
    assert read_checkpoint_metadata(resaved)["gkd_config"] == json.dumps(data)  # written back byte for byte


def test_an_old_style_export_metadata_and_run_folder_config_read_back():
    from gkd_deploy.runtime.metadata import ExportMetadata
    from gkd_deploy.training.config import TrainConfig

    config = SegmenterConfig.from_dict(old_config())
    metadata = ExportMetadata(precision="fp32", input_size=(64, 64), class_names=config.class_set.names,
                              palette=config.class_set.palette, segmenter=old_config())
    assert metadata.segmenter_config == config
    assert metadata.segmenter_config.decoder_settings().scales == (4.0, 2.0, 1.0, 0.5)
    run_config = {"stages": [3], "source": "cityscapes=/data/cs", "teacher": None,
                  "stage3": {"decoder": "mask2former-edge", "decoder_options": {"num_queries": 50}}}
    assert TrainConfig.from_dict(run_config).to_dict()["stage3"]["decoder_options"] == {"num_queries": 50}


def test_configs_read_where_torch_is_not_installed():
    """models.config and the decoder options import no torch (the ONNX Runtime install reads them)."""
    code = ("import json, sys\n"
            "sys.modules['torch'] = None  # any import of torch fails\n"
            "from gkd_deploy.models.config import SegmenterConfig\n"
            "print(SegmenterConfig.from_dict(json.loads(sys.argv[1])).decoder_settings().groups)")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(old_config())], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"
