"""An instance segmenter through export, the runtime, `gkd eval` and `gkd validate`, on a tiny
synthetic Cityscapes fixture (3 val images of 128 x 64) and a tiny model overfitted to it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.data.instances import CityscapesInstanceDataset
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import ConfigError
from gkd_deploy.evaluation.runner import evaluate_model
from gkd_deploy.evaluation.settings import EvalSettings, ValidateSettings
from gkd_deploy.evaluation.validation import validate_export
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.instance import InstanceCriterion
from gkd_deploy.models.checkpoint import save_instance_segmenter
from gkd_deploy.models.instance_segmenter import build_instance_segmenter
from gkd_deploy.precision import PRECISIONS
from gkd_deploy.runtime.loader import load_predictor
from gkd_deploy.runtime.metadata import read_onnx_metadata
from gkd_deploy.runtime.onnx_io import load_model, save_model
from tests.fixtures_sampling import PixelCentres
from tests.test_instance_model import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

HEIGHT, WIDTH = 64, 128
STEPS = 60


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """(checkpoint, targets, fp32 and fp16 exports) of a tiny model trained 60 steps on the fixture."""
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
    outcome = export_model(checkpoint, precisions=("fp32", "fp16"), input_size=(HEIGHT, WIDTH), check_count=2)
    torch.set_num_threads(threads)
    return checkpoint, f"cityscapes={root / 'cityscapes-synth'}", outcome


def test_export_writes_checked_instance_files(fixture):
    _, _, outcome = fixture
    assert [f.precision for f in outcome.files] == ["fp32", "fp16"]
    for file in outcome.files:
        metadata = read_onnx_metadata(file.path)
        assert metadata.task == "instance" and metadata.outputs == ("masks", "classes", "scores")
        assert metadata.input_size == (HEIGHT, WIDTH) and metadata.class_names[0] == "person"
        assert file.parity.kind == "masks"
        tolerance = PRECISIONS[file.precision].instance_parity
        assert tolerance.problems(file.parity.max_abs_diff, file.parity.pixel_agreement) == []
        assert file.output_bytes == 20 * (HEIGHT * WIDTH + 12)
    fp32 = outcome.files[0].parity
    assert fp32.max_abs_diff < 1e-5 and fp32.pixel_agreement > 99.99
    graph = onnx.load(str(outcome.files[0].path)).graph
    assert [o.name for o in graph.output] == ["masks", "classes", "scores"]
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.UINT8, onnx.TensorProto.INT64,
                                                                     onnx.TensorProto.FLOAT]


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


def test_what_an_instance_export_does_not_offer_is_refused(fixture):
    checkpoint, _, _ = fixture
    with pytest.raises(ConfigError, match="int8 export of an instance segmenter"):
        export_model(checkpoint, precisions=("int8",), calib=("cityscapes=/nowhere",))
    with pytest.raises(ConfigError, match="leave out --outputs"):
        export_model(checkpoint, outputs="labels")


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


def test_validate_passes_for_fp32_and_fp16(fixture):
    _, targets, outcome = fixture
    for file in outcome.files:
        report = validate_export(file.path, targets, ValidateSettings(workers=0)).report
        assert report.passed, report.to_dict()
        assert report.tolerance == PRECISIONS[file.precision].mask_ap_points
        assert report.domains[0].reference_miou > 5.0  # the reference AP, in points


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


def test_parity_of_a_random_model_whose_instances_are_not_empty(tmp_path):
    """The fixture's overfitted model finds nothing on the export's check images (all scores 0);
    a random model has non-empty masks there, so this measures the slot-by-slot check itself."""
    from gkd_deploy.exporters.check import check_instance_parity
    from gkd_deploy.exporters.fp16 import convert_fp16
    from gkd_deploy.exporters.onnx_export import export_onnx

    model = build_instance_segmenter(tiny_config()).eval()
    fp32 = export_onnx(model, tmp_path / "model-fp32.onnx", input_size=64)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        assert model.predict(images)[2].max() > 0.05
    for path in (fp32, convert_fp16(fp32, tmp_path / "model-fp16.onnx")):
        report = check_instance_parity(path, model, images)
        tolerance = PRECISIONS[report.precision].instance_parity
        assert tolerance.problems(report.max_abs_diff, report.pixel_agreement) == [], str(report)
