"""`gkd benchmark` with an instance segmenter: the rows of its checkpoint (torch, and onnxruntime on
its export) and of an exported file, the FLOP count, the combinations it cannot run, the mIoU that
does not apply, the command, and an exported file timed without torch."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from gkd_deploy.benchmark import next_commands, run_benchmark
from gkd_deploy.benchmark.sources import resolve_model
from gkd_deploy.cli.app import app
from gkd_deploy.models.checkpoint import load_instance_segmenter
from gkd_deploy.models.config import InstanceSegmenterConfig
from tests.fixtures_models import INSTANCE_SIZE, tiny_instance_model, tiny_run
from tests.test_edge_install import probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

runner = CliRunner()
QUICK = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0, "device": "cpu"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(checkpoint, its fp32 .onnx export in export/ beside it) of a random tiny instance segmenter."""
    return tiny_instance_model(tmp_path_factory.mktemp("instance-bench"))


def rows_by(report) -> dict[tuple[str, str], object]:
    """(backend, precision) -> row, for a report of one model at batch 1."""
    return {(row.backend, row.precision): row for row in report.rows}


def counted_gflops(checkpoint) -> float:
    """The FLOPs of the checkpoint's network at the export's size, counted here on the loaded model."""
    model = load_instance_segmenter(checkpoint).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, INSTANCE_SIZE, INSTANCE_SIZE) * 255)
    return counter.get_total_flops() / 1e9


def test_an_instance_model_resolves_with_its_config_and_export_size(model):
    checkpoint, onnx_file = model
    for path in (checkpoint, onnx_file):
        source = resolve_model(path)
        assert source.task == "instance" and isinstance(source.segmenter, InstanceSegmenterConfig)
        assert source.input_size == (INSTANCE_SIZE, INSTANCE_SIZE) and source.class_set.names[0] == "person"
    assert resolve_model(checkpoint).onnx_file("fp32") == onnx_file


def test_a_checkpoint_is_timed_on_torch_and_its_export_on_onnxruntime(model):
    checkpoint, onnx_file = model
    report = run_benchmark([checkpoint], backends=("torch", "onnxruntime", "tensorrt"), precisions=("fp32", "int8"),
                           **QUICK)
    rows = rows_by(report)
    torch_row, onnx_row = rows["torch", "fp32"], rows["onnxruntime", "fp32"]
    for row in (torch_row, onnx_row):
        assert row.ok and row.runs >= 3 and 0 < row.p50_ms <= row.p99_ms
        assert row.images_per_s == pytest.approx(1000 / row.mean_ms)
        assert (row.height, row.width) == (INSTANCE_SIZE, INSTANCE_SIZE) and row.size_mb > 0
        assert row.gflops == pytest.approx(counted_gflops(checkpoint)) and row.gflops > 0
        assert row.miou is None and row.reason == ""
    assert torch_row.file == str(checkpoint) and onnx_row.file == str(onnx_file)
    assert onnx_row.compute_p50_ms > 0  # the outputs bound where the session runs
    # int8 and engines exist for instance models too: what is missing here is the file, or the GPU.
    assert rows["torch", "int8"].status == "skipped" and "lives in the Q/DQ ONNX file" in rows["torch", "int8"].reason
    assert rows["onnxruntime", "int8"].status == "skipped"
    assert f"run `gkd export {checkpoint} --precision int8`" in rows["onnxruntime", "int8"].reason
    assert all(rows["tensorrt", p].status == "skipped" and "GPU backends are not run" in rows["tensorrt", p].reason
               for p in ("fp32", "int8"))


def test_an_exported_instance_file_is_timed_at_its_own_precision(model):
    checkpoint, onnx_file = model
    report = run_benchmark([onnx_file], backends=("onnxruntime", "torch"), precisions=("fp16",), batch_sizes=(1, 2),
                           **QUICK)
    measured = [row for row in report.rows if row.ok]
    assert [(row.backend, row.precision, row.batch) for row in measured] == [("onnxruntime", "fp32", 1),
                                                                             ("onnxruntime", "fp32", 2)]
    assert measured[1].images_per_s == pytest.approx(2000 / measured[1].mean_ms)
    skipped = [row for row in report.rows if row.backend == "torch"]
    assert skipped and all(row.status == "skipped" and "give" in row.reason for row in skipped)
    assert "gkd infer VIDEO --model" in next_commands(report)[-1]


def test_with_data_the_instance_rows_say_the_miou_does_not_apply(model, tmp_path):
    from gkd_deploy.data.synthetic import write_synthetic

    checkpoint, _ = model
    data = write_synthetic(tmp_path / "data", train=0, val=1, target=0, size=(128, 64), workers=1)
    semantic = tiny_run(tmp_path / "semantic")
    report = run_benchmark([semantic.path, checkpoint], backends=("torch",), data=f"cityscapes={data.cityscapes}",
                           **QUICK)
    semantic_row, instance_row = report.rows
    assert semantic_row.ok and semantic_row.miou is not None and semantic_row.reason == ""
    assert instance_row.ok and instance_row.miou is None and instance_row.p50_ms > 0
    assert instance_row.reason == (f"mIoU does not apply to an instance segmenter; its mask AP: gkd eval {checkpoint} "
                                   f"--targets cityscapes={data.cityscapes}")


def test_a_checkpoint_without_exports_is_told_which_ones_it_has(tmp_path):
    checkpoint, _ = tiny_instance_model(tmp_path, export=False)
    report = run_benchmark([checkpoint], backends=("torch", "onnxruntime"), precisions=("fp32", "fp16"), **QUICK)
    rows = rows_by(report)
    assert rows["torch", "fp16"].ok
    assert f"run `gkd export {checkpoint} --precision fp16`" in rows["onnxruntime", "fp16"].reason
    assert next_commands(report) == [f"gkd export {checkpoint} --precision fp32"]
    torch_only = run_benchmark([checkpoint], backends=("torch",), **QUICK)
    assert next_commands(torch_only) == [f"gkd export {checkpoint} --precision fp32,fp16,int8"]


def test_the_command_times_an_instance_checkpoint_and_notes_the_miou(model, tmp_path):
    from gkd_deploy.data.synthetic import write_synthetic

    checkpoint, onnx_file = model
    data = write_synthetic(tmp_path / "data", train=0, val=1, target=0, size=(128, 64), workers=1)
    result = runner.invoke(app, ["benchmark", "-m", str(checkpoint), "--backends", "torch,onnxruntime", "--device",
                                 "cpu", "--warmup", "1", "--min-runs", "2", "--min-time", "0", "--data",
                                 f"cityscapes={data.cityscapes}", "--json", str(tmp_path / "b.json"), "--csv",
                                 str(tmp_path / "b.csv")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # the table's caption wraps at the console's width
    assert "2 measured, 0 skipped or failed" in output
    assert "note instance.safetensors torch (fp32 b1 64x64): mIoU does not apply to an instance segmenter" in output
    assert f"gkd infer VIDEO --model {onnx_file}" in output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(row["backend"], row["status"]) for row in rows] == [("torch", "ok"), ("onnxruntime", "ok")]
    assert (tmp_path / "b.csv").read_text().count("\n") == 3


def test_benchmarking_an_instance_onnx_file_imports_no_torch(model, tmp_path):
    _, onnx_file = model
    result = probe(["benchmark", "--model", str(onnx_file), "--backends", "onnxruntime", "--min-runs", "2",
                    "--min-time", "0", "--warmup", "1", "--json", str(tmp_path / "b.json"), "--csv",
                    str(tmp_path / "b.csv")], tmp_path)
    assert result == {"code": 0, "heavy": []}
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert row["status"] == "ok" and row["p50_ms"] > 0 and row["gflops"] is None  # FLOPs are counted by torch
