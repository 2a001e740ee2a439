"""`gkd export --outputs labels|scores|both`: the argmax in the graph, uint8 labels, and every
consumer (infer, benchmark, validate) using what the file returns."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tests.fixtures_models import tiny_run
from gkd_deploy.cli.app import app
from gkd_deploy.errors import ModelError
from gkd_deploy.exporters.outputs import output_bytes
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.runtime.loader import load_predictor
from gkd_deploy.runtime.metadata import read_onnx_metadata

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gkd_deploy.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("outputs-data"), train=12, val=2, target=2, size=(128, 64),
                           video=True, video_frames=4, workers=1)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("outputs-run"),
                    {"source": f"cityscapes={data.cityscapes}", "targets": [f"acdc={data.acdc}"]})


@pytest.fixture(scope="module")
def both_and_labels(run, tmp_path_factory):
    both = export_model(run.path, precisions=("fp32", "int8"), calib_count=8)
    labels = export_model(run.path, precisions=("fp32", "int8"), calib_count=8, outputs="labels",
                          out_dir=tmp_path_factory.mktemp("labels-only"))
    return both, labels


def test_labels_only_files_return_the_argmax_of_the_scores_as_uint8(both_and_labels):
    both, labels = both_and_labels
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    for full, slim in zip(both.files, labels.files):
        assert full.precision == slim.precision
        session = ort.InferenceSession(str(slim.path), providers=["CPUExecutionProvider"])
        assert [output.name for output in session.get_outputs()] == ["labels"]
        (got,) = session.run(None, {"images": images})
        assert got.dtype == np.uint8 and got.shape == (2, 64, 64)
        scores, want = ort.InferenceSession(str(full.path), providers=["CPUExecutionProvider"]).run(
            None, {"images": images})
        assert want.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, scores.argmax(1))
        assert read_onnx_metadata(slim.path).outputs == ("labels",)
        # what comes back per image: 19 float scores and 1 byte per pixel, against 1 byte per pixel
        assert full.output_bytes == output_bytes(("scores", "labels"), 19, (64, 64)) == (19 * 4 + 1) * 64 * 64
        assert slim.output_bytes == 64 * 64 and slim.outputs == ("labels",)
        assert slim.parity.max_abs_diff is None and slim.parity.pixel_agreement >= 90.0  # checked as written
    assert labels.files[0].parity.pixel_agreement == 100.0  # fp32: the same labels as PyTorch


def test_predictors_fetch_the_labels_output_and_refuse_scores_they_do_not_have(both_and_labels, run):
    both, labels = both_and_labels
    images = np.random.default_rng(1).uniform(0, 255, (3, 3, 64, 64)).astype(np.float32)
    full, slim = load_predictor(both.files[0].path), load_predictor(labels.files[0].path)
    torch_model = load_predictor(run.path)
    assert slim.info.outputs == ("labels",) and full.info.outputs == ("scores", "labels")
    want = torch_model(images).argmax(1)
    for predictor in (full, slim, torch_model):
        got = predictor.labels(images)
        assert got.dtype == np.uint8 and got.shape == (3, 64, 64)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ModelError, match="returns labels only"):
        slim(images)


def test_infer_and_benchmark_run_a_labels_only_file_and_validate_says_what_it_needs(both_and_labels, data, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    _, labels = both_and_labels
    model = labels.files[0].path
    result = runner.invoke(app, ["infer", str(data.video), "--model", str(model), "--out", str(tmp_path / "seg"),
                                 "--labels", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "labels").glob("*.png"))
    assert len(written) == 4 and cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED).shape == (64, 128)
    result = runner.invoke(app, ["infer", str(data.video), "--model", str(model), "--mode", "slide"])
    assert result.exit_code == 1 and "--outputs scores or both" in str(result.exception)
    result = runner.invoke(app, ["benchmark", "--model", str(model), "--backends", "onnxruntime", "--min-runs", "2",
                                 "--min-time", "0", "--warmup", "0", "--json", str(tmp_path / "b.json"),
                                 "--csv", str(tmp_path / "b.csv")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["status"] == "ok"
    result = runner.invoke(app, ["validate", str(model), "--workers", "0"])
    assert result.exit_code == 1 and "returns labels only" in str(result.exception)


def test_unknown_outputs_are_refused_before_anything_is_written(run, tmp_path):
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run.path), "--outputs", "logits", "--out", str(out)])
    assert result.exit_code == 1 and "unknown --outputs 'logits'" in str(result.exception)
    assert not out.exists()


def test_the_export_table_shows_the_output_size_per_image(run, tmp_path, monkeypatch):
    from gkd_deploy.cli.console import console

    monkeypatch.setattr(console, "width", 200)
    result = runner.invoke(app, ["export", str(run.path), "--outputs", "labels", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "output MB/img" in result.output and "0.00 (labels)" in result.output
