"""The deployment path: gkd export (fp32/fp16/int8) -> runtime layer -> gkd validate."""

from __future__ import annotations

import json

import pytest
import numpy as np
import torch
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.errors import ConfigError, ExportError, ModelError
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.fileio import write_yaml
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.run import RunDir
from gkd_deploy.runtime.loader import load_predictor

runner = CliRunner()
SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gkd_deploy.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("deploy-data"), train=12, val=2, target=2, size=(128, 64), workers=1)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A run folder as `gkd train` leaves it (config + segmenter checkpoint)."""
    run = RunDir(tmp_path_factory.mktemp("deploy-run"))
    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64, decoder_options=SMALL_FPN))
    save_segmenter(model, run.segmenter_checkpoint)
    write_yaml(run.config_path, {"source": f"cityscapes={data.cityscapes}", "targets": [f"acdc={data.acdc}"]})
    return run


@pytest.fixture(scope="module")
def exported(run):
    result = runner.invoke(app, ["export", str(run.path), "--precision", "fp32,fp16,int8", "--calib-count", "12"])
    assert result.exit_code == 0, result.output
    return run.export_dir


def test_export_writes_every_precision_with_metadata(exported, run):
    from gkd_deploy.fileio import file_sha256
    from gkd_deploy.runtime.metadata import read_onnx_metadata

    for precision in ("fp32", "fp16", "int8"):
        metadata = read_onnx_metadata(exported / f"model-{precision}.onnx")
        assert metadata.precision == precision
        assert metadata.input_size == (64, 64)
        assert metadata.class_names[13] == "car" and len(metadata.palette) == 19
        assert metadata.source_sha256 == file_sha256(run.segmenter_checkpoint)
    assert read_onnx_metadata(exported / "model-int8.onnx").calibration["images"] == 12


def test_predictors_agree_across_backends(exported, run):
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    reference = load_predictor(run.path)
    assert reference.info.backend == "torch" and reference.info.input_size is None
    want = reference(images)  # numpy in, numpy out, whatever the backend
    assert isinstance(want, np.ndarray) and want.dtype == np.float32
    np.testing.assert_allclose(reference.forward(torch.from_numpy(images)).numpy(), want, atol=1e-6)
    for precision, tolerance in (("fp32", 1e-4), ("fp16", 5e-2)):
        predictor = load_predictor(exported / f"model-{precision}.onnx")
        assert predictor.info.backend == "onnxruntime" and predictor.info.precision == precision
        got = predictor(images)
        assert isinstance(got, np.ndarray) and got.shape == want.shape
        assert np.abs(got - want).max() < tolerance
    int8 = load_predictor(exported / "model-int8.onnx")(images)
    assert (int8.argmax(1) == want.argmax(1)).mean() > 0.9


def test_validate_passes_and_writes_json(exported, data):
    for precision in ("fp32", "int8"):
        model = exported / f"model-{precision}.onnx"
        result = runner.invoke(app, ["validate", str(model), "--targets", f"acdc={data.acdc}", "--workers", "0"])
        assert result.exit_code == 0, result.output
        report = json.loads((exported / f"model-{precision}.onnx.validate.json").read_text())
        assert [d["domain"] for d in report["domains"]] == ["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]
        assert report["passed"] and report["tolerance"] == (0.1 if precision == "fp32" else 1.0)
        for domain in report["domains"]:
            assert abs(domain["delta"]) <= report["tolerance"]
            assert domain["pixel_agreement"] > (99.9 if precision == "fp32" else 90.0)


def test_validating_several_exports_runs_pytorch_once_with_a_shared_cache(exported, data, monkeypatch, tmp_path):
    from gkd_deploy.evaluation.settings import ValidateSettings
    from gkd_deploy.evaluation.validation import validate_export
    from gkd_deploy.runtime.torch_backend import TorchPredictor

    targets = f"acdc={data.acdc}"
    fresh = {p: validate_export(exported / f"model-{p}.onnx", targets,
                                 ValidateSettings(workers=0, json_path=tmp_path / f"{p}.json"))
             for p in ("fp32", "int8")}
    calls = []
    original = TorchPredictor.forward
    monkeypatch.setattr(TorchPredictor, "forward", lambda self, images: calls.append(1) or original(self, images))
    cache = {}
    for precision in ("fp32", "int8"):
        cached = validate_export(exported / f"model-{precision}.onnx", targets,
                                 ValidateSettings(workers=0, json_path=tmp_path / f"cached-{precision}.json"),
                                 reference_cache=cache)
        assert cached.report.to_dict() == fresh[precision].report.to_dict()
        if precision == "fp32":
            first_pass = len(calls)
    assert first_pass > 0 and len(calls) == first_pass  # the int8 validation reused PyTorch's labels


def test_validate_fails_when_the_exported_model_drifts(exported, data, monkeypatch):
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

    original = OnnxRuntimePredictor.__call__

    def drifting(self, images):  # an export that lost a class: scores of class 0 pushed to the top
        scores = original(self, images)
        scores[:, 0] += 1e3
        return scores

    monkeypatch.setattr(OnnxRuntimePredictor, "__call__", drifting)
    result = runner.invoke(app, ["validate", str(exported / "model-fp32.onnx"), "--targets", f"acdc={data.acdc}",
                                 "--workers", "0"])
    assert result.exit_code == 1 and "validation failed" in result.output
    report = json.loads((exported / "model-fp32.onnx.validate.json").read_text())
    assert not report["passed"]


def test_bad_inputs_are_refused(tmp_path, run, data):
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an ONNX file"):
        load_predictor(not_onnx)
    with pytest.raises(ModelError, match="cannot tell the model format"):
        (tmp_path / "model.bin").write_bytes(b"x")
        load_predictor(tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="unknown precision int4"):
        export_model(run.path, precisions=("int4",))
    bare = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64)), tmp_path / "bare.safetensors")
    with pytest.raises(ConfigError, match="--calib"):
        export_model(bare, precisions=("int8",), out_dir=tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no (samples|calibration images|images)"):
        export_model(bare, precisions=("int8",), calib=f"images={empty}", out_dir=tmp_path / "out2")


def test_bare_checkpoint_is_checked_on_synthetic_scenes(tmp_path):
    bare = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64)), tmp_path / "bare.safetensors")
    outcome = export_model(bare, precisions=("fp32",), check_count=3)
    assert outcome.check_images == 3 and outcome.files[0].path == tmp_path / "export" / "model-fp32.onnx"
    assert outcome.files[0].parity.pixel_agreement > 99.9


def test_tensorrt_missing_names_the_fix_and_the_trtexec_command(exported, monkeypatch):
    import builtins

    from gkd_deploy.exporters.tensorrt import build_engine

    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("no tensorrt")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(ExportError, match=r"(?s)gkd-deploy\[tensorrt\].*trtexec --onnx=.*--stronglyTyped.*images:1x3x64x64"):
        build_engine(exported / "model-fp16.onnx", exported / "model-fp16.engine")
    assert not (exported / "model-fp16.engine").exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(exported):
    from gkd_deploy.exporters.tensorrt import build_engine

    engine = build_engine(exported / "model-fp32.onnx", exported / "model-fp32.engine")
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    trt_scores = load_predictor(engine)(images)
    ort_scores = load_predictor(exported / "model-fp32.onnx")(images)
    assert (trt_scores.argmax(1) == ort_scores.argmax(1)).mean() > 0.999


def test_eval_scores_an_exported_file_as_validate_does_with_the_runs_targets(exported, data, tmp_path):
    from gkd_deploy.evaluation.runner import evaluate_model
    from gkd_deploy.evaluation.settings import EvalSettings, ValidateSettings
    from gkd_deploy.evaluation.validation import validate_export

    model = exported / "model-fp32.onnx"
    outcome = evaluate_model(model, settings=EvalSettings(workers=0, json_path=tmp_path / "eval.json"))  # targets from the run
    validation = validate_export(model, f"acdc={data.acdc}", ValidateSettings(workers=0, json_path=tmp_path / "validate.json"))
    assert [d.domain for d in outcome.report.domains] == ["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]
    for scored, validated in zip(outcome.report.domains, validation.report.domains):
        assert scored.miou == pytest.approx(validated.exported_miou, abs=1e-9)
    result = runner.invoke(app, ["validate", str(model), "--workers", "0", "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output  # validate, too, defaults to the run's targets


def test_export_to_tensorrt_where_it_is_missing_keeps_the_onnx_files_and_prints_the_commands(run, monkeypatch,
                                                                                               tmp_path):
    from gkd_deploy.cli.console import console

    monkeypatch.setattr("gkd_deploy.exporters.pipeline.tensorrt_available", lambda: False)
    monkeypatch.setattr(console, "width", 200)
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run.path), "--format", "onnx,trt", "--precision", "fp32,fp16",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output  # a skip, not a failure
    assert (out / "model-fp32.onnx").is_file() and (out / "model-fp16.onnx").is_file()
    assert "TensorRT is not installed here" in result.output
    for precision in ("fp32", "fp16"):
        assert f"trtexec --onnx={out / f'model-{precision}.onnx'} --saveEngine={out / f'model-{precision}.engine'}" \
            in result.output


def test_an_export_at_another_size_gets_its_own_files(tmp_path):
    from gkd_deploy.runtime.metadata import read_onnx_metadata

    bare = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64)), tmp_path / "bare.safetensors")
    default = export_model(bare, precisions=("fp32", "fp16"), check_count=2).files
    before = {f.path: f.path.read_bytes() for f in default}
    wide = export_model(bare, precisions=("fp32", "fp16"), input_size=(64, 128), check_count=2).files
    assert [f.path.name for f in default] == ["model-fp32.onnx", "model-fp16.onnx"]
    assert [f.path.name for f in wide] == ["model-fp32-128x64.onnx", "model-fp16-128x64.onnx"]
    assert all(path.read_bytes() == data for path, data in before.items())  # the training-size files untouched
    assert read_onnx_metadata(wide[0].path).input_size == (64, 128)
