"""An instance segmenter through export (fp32, fp16, int8), the runtime, `gkd eval`, `gkd validate`,
`gkd benchmark` and `gkd infer`, on a tiny synthetic Cityscapes fixture (3 val images of 128 x 64)
and a tiny model overfitted to it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.data.instances import CityscapesInstanceDataset
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import ConfigError, ExportError
from gkd_deploy.evaluation.runner import evaluate_model
from gkd_deploy.evaluation.settings import EvalSettings, ValidateSettings
from gkd_deploy.evaluation.validation import validate_export
from gkd_deploy.exporters import pipeline
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.instance import InstanceCriterion
from gkd_deploy.models.checkpoint import save_instance_segmenter
from gkd_deploy.models.instance_segmenter import build_instance_segmenter
from gkd_deploy.precision import PRECISIONS
from gkd_deploy.runtime.loader import load_predictor
from gkd_deploy.runtime.metadata import INSTANCE_NETWORK_OUTPUTS, read_onnx_metadata
from gkd_deploy.runtime.onnx_io import load_model, save_model
from tests.fixtures_sampling import PixelCentres
from tests.test_instance_model import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

HEIGHT, WIDTH = 64, 128
STEPS = 60


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """(checkpoint, targets, fp32, fp16 and int8 exports) of a tiny model trained 60 steps on the
    fixture; calibration and check images are the fixture's (where the model finds instances)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("instances")
    write_synthetic(root, train=0, val=3, target=0, size=(WIDTH, HEIGHT), seed=3, workers=1)
    dataset = CityscapesInstanceDataset(root / "cityscapes-synth", "val")
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    instances = [(torch.from_numpy(s.target.classes), torch.from_numpy(s.target.masks)) for s in samples]
    model = build_instance_segmenter(tiny_config(top_k=20)).train()
    criterion = InstanceCriterion(8, PixelCentres(HEIGHT // 4, WIDTH // 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(STEPS):
        loss = criterion(model.forward_train(images), instances)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = save_instance_segmenter(model.eval(), root / "instance.safetensors")
    targets = f"cityscapes={root / 'cityscapes-synth'}"
    outcome = export_model(checkpoint, precisions=("fp32", "fp16", "int8"), input_size=(HEIGHT, WIDTH), check_count=3,
                           calib=(targets,), calib_count=3)
    torch.set_num_threads(threads)
    return checkpoint, targets, outcome


def test_export_writes_checked_instance_files(fixture):
    _, _, outcome = fixture
    assert [f.precision for f in outcome.files] == ["fp32", "fp16", "int8"]
    for file in outcome.files:
        metadata = read_onnx_metadata(file.path)
        assert metadata.task == "instance" and metadata.outputs == ("masks", "classes", "scores")
        assert metadata.input_size == (HEIGHT, WIDTH) and metadata.class_names[0] == "person"
        assert file.parity.kind == "instances" and file.parity.instances > 0  # the check saw instances
        tolerance = PRECISIONS[file.precision].instance_parity
        assert tolerance.problems(file.parity.max_abs_diff, file.parity.matched, file.parity.pixel_agreement) == []
        assert file.output_bytes == 20 * (HEIGHT * WIDTH + 12)
    fp32 = outcome.files[0].parity
    assert fp32.max_abs_diff < 1e-5 and fp32.matched == 100.0 and fp32.pixel_agreement > 99.99
    graph = onnx.load(str(outcome.files[0].path)).graph
    assert [o.name for o in graph.output] == ["masks", "classes", "scores"]
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.UINT8, onnx.TensorProto.INT64,
                                                                     onnx.TensorProto.FLOAT]
    calibration = read_onnx_metadata(outcome.files[2].path).extra["calibration"]
    assert (calibration["target"], calibration["remainder"], calibration["images"]) == ("tensorrt", "fp16", 3)


def post_processing(model) -> tuple[object, set[str]]:
    """(the graph's view, the names of the nodes computed from the raw logits: the post-processing)."""
    from gkd_deploy.calib.placement import GraphView, downstream_nodes, name_nodes

    name_nodes(model)
    graph = GraphView(model)
    return graph, downstream_nodes(graph, INSTANCE_NETWORK_OUTPUTS)


def quantized_nodes(placement) -> set[str]:
    """The nodes a placement gives an int8 input."""
    return {name for sites in placement.activations.values() for name, _ in sites} | {n for n, _ in placement.weights}


def test_int8_quantizes_the_network_and_leaves_the_post_processing_float(fixture):
    from gkd_deploy.calib.placement import place_qdq

    _, _, outcome = fixture
    fp32 = load_model(outcome.files[0].path)
    graph, after = post_processing(fp32)
    assert {"TopK", "Softmax", "Resize", "Sigmoid", "Greater", "Cast"} <= {graph.nodes[n].op_type for n in after}
    op_types = lambda names: {graph.nodes[name].op_type for name in names}  # noqa: E731
    # Left to the rules, the tensorrt placement quantizes the mask Resize, and quantize_sensitive the Softmax.
    assert op_types(quantized_nodes(place_qdq(fp32, "tensorrt")) & after) == {"Resize"}
    assert op_types(quantized_nodes(place_qdq(fp32, "tensorrt", quantize_sensitive=True)) & after) == {"Resize",
                                                                                                       "Softmax"}
    for target in ("tensorrt", "onnxruntime"):
        placement = place_qdq(fp32, target, quantize_sensitive=True, float_after=INSTANCE_NETWORK_OUTPUTS)
        assert {"MatMul", "Conv"} <= op_types(quantized_nodes(placement))
        assert not quantized_nodes(placement) & after
    # The int8 file as written: Q/DQ throughout the network, none in or after the post-processing.
    int8_graph, int8_after = post_processing(load_model(outcome.files[2].path))
    qdq = [node for node in int8_graph.nodes.values() if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100 and not {node.name for node in qdq} & int8_after
    assert not any(node.op_type == "GridSample" for node in int8_graph.nodes.values())  # target tensorrt: gathers
    assert any(node.op_type == "GatherElements" for node in int8_graph.nodes.values())


def test_int8_files_for_tensorrt_are_checked_with_their_qdq_pairs_as_written(fixture):
    """TensorRT computes Q/DQ exactly; ONNX Runtime's fused x86 int8 kernels need not (no VNNI)."""
    import onnxruntime

    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimeInstancePredictor, runs_qdq_as_written

    _, _, outcome = fixture
    metadata = [read_onnx_metadata(file.path) for file in outcome.files]
    assert [runs_qdq_as_written(m) for m in metadata] == [False, False, True]
    assert not runs_qdq_as_written(metadata[2].with_precision("int8", {"target": "onnxruntime", "remainder": "fp32"}))
    levels = [OnnxRuntimeInstancePredictor(outcome.files[2].path, "cpu", as_written=written)
              .session.get_session_options().graph_optimization_level for written in (False, True)]
    assert levels == [onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL, onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL]


def test_a_broken_int8_file_fails_the_check_and_is_deleted(fixture, tmp_path, monkeypatch):
    """A copy with one weight scale of the decoder multiplied by 10 finds few of PyTorch's instances."""
    checkpoint, targets, _ = fixture
    convert = pipeline.CONVERTERS["int8"]

    def broken(fp32, out, job):
        path = convert(fp32, out, job)
        model = load_model(path)
        scale = next(t for t in model.graph.initializer if BROKEN_SCALE in t.name)
        scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 10, scale.name))
        save_model(model, path)
        return path

    monkeypatch.setitem(pipeline.CONVERTERS, "int8", broken)
    with pytest.raises(ExportError, match=r"the int8 export does not match PyTorch: .*instances found"):
        export_model(checkpoint, precisions=("int8",), input_size=(HEIGHT, WIDTH), check_count=3, calib=(targets,),
                     calib_count=3, out_dir=tmp_path)
    assert sorted(path.name for path in tmp_path.glob("*.onnx")) == ["model-fp32-128x64.onnx"]  # int8 deleted


# The per-channel weight scales of the decoder's last self-attention output projection.
BROKEN_SCALE = "transformer.layers.1.self_attention.out_proj.weight_axis"


def test_the_onnx_predictor_matches_the_torch_one(fixture):
    checkpoint, _, outcome = fixture
    exported, reference = load_predictor(outcome.files[0].path, "cpu"), load_predictor(checkpoint, "cpu")
    assert exported.info.task == reference.info.task == "instance"
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, HEIGHT, WIDTH)).astype(np.float32)
    masks, classes, scores = exported(images)
    reference_masks, reference_classes, reference_scores = reference(images)
    assert masks.shape == (2, 20, HEIGHT, WIDTH) and masks.dtype == bool
    np.testing.assert_array_equal(classes, reference_classes)
    np.testing.assert_allclose(scores, reference_scores, atol=1e-5)
    assert (masks == reference_masks).mean() > 0.9999
    with pytest.raises(Exception, match="instance segmenter"):
        exported.labels(images)


def test_an_instance_file_runs_without_torch(fixture):
    _, _, outcome = fixture
    script = ("import sys, numpy as np\n"
              "from gkd_deploy.runtime.loader import load_predictor\n"
              f"p = load_predictor({str(outcome.files[0].path)!r}, 'cpu')\n"
              f"masks, classes, scores = p(np.zeros((1, 3, {HEIGHT}, {WIDTH}), np.float32))\n"
              "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'torch or onnx imported'\n"
              "print(p.info.task, masks.shape, classes.dtype)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "instance"


def test_bad_instance_exports_get_one_line(fixture, tmp_path, capsys, monkeypatch):
    """--outputs stays refused (an instance file returns all three); int8 of a bare checkpoint needs --calib."""
    from tests.test_cli_bad_input import run_gkd

    checkpoint, _, _ = fixture
    with pytest.raises(ConfigError, match="leave out --outputs"):
        export_model(checkpoint, outputs="labels")
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    for extra, message in ((["--outputs", "labels"], "leave out --outputs"),
                           (["--precision", "int8"], "int8 needs calibration images: give --calib NAME=PATH")):
        code, err = run_gkd(["export", str(checkpoint), "--out", str(tmp_path / "out"), *extra], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out").exists()


def test_eval_reports_mask_ap_per_domain(fixture, tmp_path):
    checkpoint, targets, outcome = fixture
    report = evaluate_model(checkpoint, targets, EvalSettings(workers=0, json_path=tmp_path / "eval.json")).report
    (domain,) = report.domains
    assert domain.domain == "cityscapes" and domain.num_images == 3
    assert 5.0 < domain.ap <= domain.ap50 <= 100.0  # overfitted: well above a random model's 0
    stored = json.loads((tmp_path / "eval.json").read_text())
    assert stored["task"] == "instance" and stored["domains"][0]["ap"] == pytest.approx(domain.ap, abs=1e-3)
    # The checkpoint runs at 64 on the short side: the exported size, so the file scores the same.
    exported = evaluate_model(outcome.files[0].path, targets, EvalSettings(workers=0, json_path=tmp_path / "e.json")).report
    assert exported.domains[0].ap == pytest.approx(domain.ap, abs=0.1)


def test_validate_passes_for_fp32_fp16_and_int8(fixture):
    _, targets, outcome = fixture
    for file in outcome.files:
        report = validate_export(file.path, targets, ValidateSettings(workers=0)).report
        assert report.passed, report.to_dict()
        assert report.tolerance == PRECISIONS[file.precision].mask_ap_points
        assert report.domains[0].reference_miou > 5.0  # the reference AP, in points
    assert PRECISIONS["int8"].mask_ap_points > PRECISIONS["fp16"].mask_ap_points


def broken_copy(path, out):
    """The file with its input halved before the encoder (a wrong normalisation), metadata kept."""
    model = load_model(path)
    graph = model.graph
    for node in graph.node:
        node.input[:] = ["images_halved" if name == "images" else name for name in node.input]
    half = onnx.helper.make_tensor("half", onnx.TensorProto.FLOAT, [], [0.5])
    graph.initializer.append(half)
    graph.node.insert(0, onnx.helper.make_node("Mul", ["images", "half"], ["images_halved"]))
    return save_model(model, out)


def test_validate_fails_for_a_broken_file(fixture, tmp_path):
    _, targets, outcome = fixture
    broken = broken_copy(outcome.files[0].path, tmp_path / "model-fp32.onnx")
    report = validate_export(broken, targets, ValidateSettings(reference=fixture[0], workers=0)).report
    assert not report.passed
    assert abs(report.domains[0].delta) > report.tolerance


def test_the_commands_print_mask_ap(fixture, tmp_path):
    checkpoint, targets, outcome = fixture
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(checkpoint), "--targets", targets, "--workers", "0",
                                 "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert "mask AP" in result.output and "AP50" in result.output and "cityscapes" in result.output
    result = runner.invoke(app, ["validate", str(outcome.files[0].path), "--targets", targets, "--workers", "0",
                                 "--json", str(tmp_path / "validate.json")])
    assert result.exit_code == 0, result.output
    assert "validation passed" in result.output and "mask AP" in result.output
    broken = broken_copy(outcome.files[0].path, tmp_path / "model-fp32.onnx")
    result = runner.invoke(app, ["validate", str(broken), "--targets", targets, "--reference", str(checkpoint),
                                 "--workers", "0", "--json", str(tmp_path / "broken.json")])
    assert result.exit_code == 1 and "mask AP moved" in result.output


def test_parity_of_random_models_matches_instances_not_slots(tmp_path):
    """A random model's scores are near-uniform (p ~0.1 for all Q x C pairs): every instance sits
    at the top-k cut, so none has to be found. With its heads made confident, fp32 and fp16 files
    find every instance PyTorch has (and the other way round), their masks agree and scores match."""
    from gkd_deploy.exporters.check import assert_parity, check_instance_parity
    from gkd_deploy.exporters.fp16 import convert_fp16
    from gkd_deploy.exporters.onnx_export import export_onnx
    from tests.fixtures_models import confident_instance_heads

    torch.manual_seed(0)
    model = build_instance_segmenter(tiny_config()).eval()
    images = pipeline.synthetic_images(8, (64, 64), seed=100).astype(np.float32)
    random_file = export_onnx(model, tmp_path / "random-fp32.onnx", input_size=64)
    report = check_instance_parity(random_file, model, images)
    assert report.instances == 0 and report.matched == 100.0
    confident_instance_heads(model)
    fp32 = export_onnx(model, tmp_path / "model-fp32.onnx", input_size=64)
    with torch.no_grad():
        assert model.predict(torch.from_numpy(images))[2].max() > 0.3
    for path in (fp32, convert_fp16(fp32, tmp_path / "model-fp16.onnx")):
        report = check_instance_parity(path, model, images)
        assert report.instances >= 20 and report.matched == 100.0 and report.pixel_agreement > 99.0, str(report)
        assert_parity(report)


def test_gkd_export_writes_an_int8_instance_file_and_prints_its_check(fixture, tmp_path, monkeypatch):
    from gkd_deploy.cli.console import console

    checkpoint, targets, _ = fixture
    # The table's headers on one line each (the shared console's width is fixed when it is made,
    # so COLUMNS at invoke time does not reach it once another test has imported it).
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--precision", "int8", "--calib", targets,
                                      "--calib-count", "3", "--size", f"{WIDTH}x{HEIGHT}", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "instances found %" in result.output and "mask IoU %" in result.output
    assert "int8 calibrated on 3 images (minmax), Q/DQ placed for tensorrt" in result.output
    assert read_onnx_metadata(tmp_path / "model-int8-128x64.onnx").precision == "int8"


def test_benchmark_and_infer_take_the_int8_file(fixture, tmp_path):
    from gkd_deploy.benchmark import run_benchmark
    from gkd_deploy.infer.instances import InstanceFrameSegmenter

    _, targets, outcome = fixture
    int8 = outcome.files[2].path
    report = run_benchmark([int8], backends=("onnxruntime",), warmup=1, min_runs=3, min_seconds=0.0, device="cpu")
    (row,) = report.rows
    assert row.ok and (row.backend, row.precision, row.file) == ("onnxruntime", "int8", str(int8)) and row.p50_ms > 0
    (folder,) = (Path(targets.split("=", 1)[1]) / "leftImg8bit" / "val").iterdir()  # the one city's images
    result = CliRunner().invoke(app, ["infer", str(folder), "--model", str(int8), "--out", str(tmp_path / "seg"),
                                      "--labels", str(tmp_path / "labels"), "--score-threshold", "0.3", "--device",
                                      "cpu", "--json", str(tmp_path / "infer.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "infer.json").read_text())
    assert summary["task"] == "instance" and summary["processed"] == 3
    records = [json.loads(path.read_text())["instances"] for path in sorted((tmp_path / "labels").rglob("*.json"))]
    frames = [cv2.imread(str(path)) for path in sorted(folder.glob("*.png"))]
    expected = InstanceFrameSegmenter(load_predictor(int8, "cpu"), score_threshold=0.3)(frames)
    assert [[r["score"] for r in record] for record in records] == [
        [round(float(s), 4) for s in instances.scores] for instances in expected]
    assert sum(len(record) for record in records) > 0  # the int8 file finds the overfitted model's instances


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_tensorrt_engines_of_the_instance_files_pass_their_check(fixture, tmp_path, precision):
    """Where TensorRT and a GPU are: each file's engine is built, checked against ONNX Runtime on
    the fixture's images (deleted over tolerance) and run by the instance predictor."""
    from gkd_deploy.calib import calibration_images
    from gkd_deploy.exporters.tensorrt import build_engine

    _, targets, outcome = fixture
    onnx_file = next(file.path for file in outcome.files if file.precision == precision)
    images = calibration_images([targets], 3, (HEIGHT, WIDTH), seed=1, warn_small=False).images.astype(np.float32)
    engine = build_engine(onnx_file, tmp_path / f"model-{precision}.engine", check_images=images)
    masks, classes, scores = load_predictor(engine)(images)
    assert masks.shape == (3, 20, HEIGHT, WIDTH) and classes.dtype == np.int64 and scores.shape == (3, 20)
