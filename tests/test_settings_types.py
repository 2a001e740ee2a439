"""Typed settings: one table of precisions (every exported precision has a converter, a parity and an
mIoU gate), one size type, the segmenter config read back typed, merges and decoder options by type."""

import pytest

from gkd_deploy.errors import ConfigError
from gkd_deploy.exporters.pipeline import CONVERTERS
from gkd_deploy.precision import EXPORT_PRECISIONS, PRECISIONS, TORCH_PRECISIONS, Tolerance, check_precisions, precision


def test_the_table_covers_every_use():
    assert EXPORT_PRECISIONS == ("fp32", "fp16", "int8") and TORCH_PRECISIONS == ("fp32", "fp16", "bf16")
    assert set(CONVERTERS) == set(EXPORT_PRECISIONS) - {"fp32"}  # fp32 is the exported base
    for name in EXPORT_PRECISIONS:
        row = PRECISIONS[name]
        assert row.parity is not None and row.engine_parity is not None and row.miou_points > 0
        # an engine is never held tighter than the ONNX file it was built from
        assert row.engine_parity.min_pixel_agreement <= row.parity.min_pixel_agreement
    assert PRECISIONS["int8"].parity.max_abs_diff is None  # int8 scores are not compared, only labels
    assert [PRECISIONS[n].torch_dtype for n in TORCH_PRECISIONS] == [None, "float16", "bfloat16"]


def test_tolerance_names_what_is_over():
    tolerance = Tolerance(max_abs_diff=1e-3, min_pixel_agreement=99.0)
    assert tolerance.problems(5e-4, 99.5) == []
    assert tolerance.problems(2e-3, 98.0) == ["max score difference 0.002 > 0.001", "pixel agreement 98.00% < 99.00%"]
    assert Tolerance(None, 90.0).problems(3.0, 95.0) == []  # scores not checked


def test_unknown_precisions_are_refused_with_the_choices():
    assert check_precisions(["int8", "fp32", "int8"]) == ("fp32", "int8")
    with pytest.raises(ConfigError, match="unknown precision bf16; choose from fp32, fp16, int8"):
        check_precisions(["bf16"])
    with pytest.raises(ConfigError, match=r"unknown precision \(none\)"):
        check_precisions([])
    assert precision("bf16").torch_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="choose from fp32, fp16, int8"):
        precision("bf16", EXPORT_PRECISIONS)


def test_one_size_type_reads_text_and_pairs():
    import numpy as np

    from gkd_deploy.size import Size

    size = Size.parse("1024x512", "--size")
    assert size.hw == (512, 1024) and size.wh == (1024, 512) and str(size) == "1024x512"
    assert Size.of((np.int64(64), 96)).hw == (64, 96) and Size.of(size) is size
    for bad, message in [("1024", "not WIDTHxHEIGHT"), ("0x512", "width must be a positive"), ("ax5", "WIDTHxHEIGHT")]:
        with pytest.raises(ConfigError, match=message):
            Size.parse(bad, "--size")
    for bad in [(64,), "64x64", (True, 64), (64, 0.5), None]:
        with pytest.raises(ConfigError, match="input size"):
            Size.of(bad, "input size")


def test_an_exported_files_segmenter_config_reads_back_typed(tmp_path):
    from gkd_deploy.models.config import SegmenterConfig
    from gkd_deploy.runtime.metadata import ExportMetadata
    from gkd_deploy.errors import ModelError

    config = SegmenterConfig("tiny-student", decoder="semfpn", decoder_options={"groups": 4}, img_size=64)
    metadata = ExportMetadata(precision="fp32", input_size=(64, 64), class_names=config.class_set.names,
                              palette=config.class_set.palette, segmenter=config.to_dict())
    assert metadata.segmenter_config == config
    broken = ExportMetadata(precision="fp32", input_size=(64, 64), class_names=config.class_set.names,
                            palette=config.class_set.palette, segmenter={"decoder": "semfpn"})
    with pytest.raises(ModelError, match="'encoder' is missing"):
        broken.segmenter_config


def test_settings_merge_by_their_types():
    from gkd_deploy.training.config import DistillSettings, deep_merge

    base = {"seed": 1, "stage3": {"steps": 5, "decoder_options": {"groups": 8, "neck_channels": 64}},
            "stage1": {"method_options": {"alpha": 1.0}}}
    merged = deep_merge(base, {"stage3": {"decoder_options": {"groups": 4}}, "stage1": {"steps": 3}})
    # nested settings merge key by key; a mapping of options replaces the previous one whole
    assert merged == {"seed": 1, "stage3": {"steps": 5, "decoder_options": {"groups": 4}},
                      "stage1": {"method_options": {"alpha": 1.0}, "steps": 3}}
    assert deep_merge({"method_options": {"a": 1}}, {"method_options": {"b": 2}}, DistillSettings) == \
        {"method_options": {"b": 2}}


def test_decoder_options_are_checked_when_the_config_is_read():
    from gkd_deploy.training.config import TrainConfig

    base = {"stages": [3], "source": "cityscapes=/data/cs", "teacher": None}
    with pytest.raises(ConfigError, match="the semfpn decoder has no option 'neck_channel' \\(did you mean 'neck_channels'"):
        TrainConfig.from_dict({**base, "stage3": {"decoder": "semfpn", "decoder_options": {"neck_channel": 64}}})
    with pytest.raises(ConfigError, match="linear decoder has no option 'groups'; it takes none"):
        TrainConfig.from_dict({**base, "stage3": {"decoder": "linear", "decoder_options": {"groups": 4}}})
    config = TrainConfig.from_dict({**base, "stage3": {"decoder": "mask2former-edge", "decoder_options": {"num_queries": 50}}})
    assert config.stage3.decoder_options == {"num_queries": 50}
