"""The run folder owns every name in it: stage files, exports per precision / size / outputs,
reports, the typed config, and which run a file belongs to."""


import pytest

from gkd_deploy.errors import ConfigError
from gkd_deploy.fileio import write_yaml
from gkd_deploy.run import ExportDir, RunDir, export_dir_of, report_path, run_of_export


def test_stage_files_and_exports_are_named_by_the_run(tmp_path):
    run = RunDir(tmp_path / "exp")
    assert run.stage_result(1) == tmp_path / "exp/checkpoints/stage1-student.safetensors"
    assert run.stage_result(3) == run.segmenter_checkpoint == tmp_path / "exp/checkpoints/segmenter.safetensors"
    assert run.stage_ema(2) == tmp_path / "exp/checkpoints/stage2-student-ema.safetensors"
    assert run.stage_state(2) == tmp_path / "exp/checkpoints/stage2-state.pt"
    exports = run.exports
    assert exports.file("int8") == tmp_path / "exp/export/model-int8.onnx"
    assert exports.file("fp16", "trt") == tmp_path / "exp/export/model-fp16.engine"
    assert exports.file("fp32", size=(512, 1024), trained_size=(512, 512)).name == "model-fp32-1024x512.onnx"
    assert exports.file("fp32", size=(512, 512), trained_size=(512, 512)).name == "model-fp32.onnx"
    assert exports.file("int8", outputs="labels").name == "model-int8-labels.onnx"
    with pytest.raises(ConfigError, match="unknown format 'tflite'"):
        exports.file("fp32", "tflite")


def test_the_run_of_a_file_is_found_from_checkpoints_and_exports(tmp_path):
    run = RunDir(tmp_path / "exp")
    run.path.mkdir()
    assert RunDir.containing(run.exports.file("fp32")) is None  # no config.yaml: not a run
    write_yaml(run.config_path, {"seed": 3})
    assert RunDir.containing(run.exports.file("fp32")) == run
    assert RunDir.containing(run.segmenter_checkpoint) == run
    assert run_of_export(run.exports.file("int8")) == run
    assert run_of_export(run.segmenter_checkpoint) is None
    assert RunDir.containing(tmp_path / "model.onnx") is None
    bare = tmp_path / "weights" / "model.safetensors"
    assert export_dir_of(bare, None) == ExportDir(tmp_path / "weights" / "export")
    assert export_dir_of(run.segmenter_checkpoint, run) == run.exports


def test_first_existing_export_prefers_onnx_then_fp32(tmp_path):
    exports = ExportDir(tmp_path)
    assert exports.first_existing() is None
    exports.file("int8", "trt").write_bytes(b"")
    assert exports.first_existing() == tmp_path / "model-int8.engine"
    (tmp_path / "model-fp16.plan").write_bytes(b"")
    assert exports.engine("fp16") == tmp_path / "model-fp16.plan"
    exports.file("fp16").write_bytes(b"")
    exports.file("fp32", outputs="labels").write_bytes(b"")  # not the full model
    assert exports.first_existing() == tmp_path / "model-fp16.onnx"


def test_config_is_read_back_typed(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(ConfigError, match="holds no config.yaml"):
        run.config()
    write_yaml(run.config_path, {"targets": ["acdc=/data/acdc"], "seed": "7"})
    config = run.config()
    assert config.targets == ("acdc=/data/acdc",) and config.seed == 7 and config.student == "vit-s"
    with pytest.raises(ConfigError, match="proxy"):  # a partial config is not one to train with
        run.config(validate=True)
    run.config_path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        run.config()


def test_reports_lie_beside_the_file_or_in_the_run(tmp_path):
    assert report_path(tmp_path, "benchmark", "png") == tmp_path / "benchmark.png"
    assert report_path(tmp_path / "model-int8.onnx", "validate") == tmp_path / "model-int8.onnx.validate.json"

