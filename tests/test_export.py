"""ONNX export: fp32 files that load, batch freely, match PyTorch and describe themselves; fp16 copies."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from gkd_deploy.data.classes import CITYSCAPES
from gkd_deploy.data.registry import build_domains, parse_dataset_arg
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import ModelError
from gkd_deploy.precision import PRECISIONS
from gkd_deploy.exporters import (
    ExportError, ParityReport, assert_parity, check_parity, convert_fp16, export_onnx, read_onnx_metadata,
)
from gkd_deploy.runtime import onnx_io
from gkd_deploy.exporters.graph_repair import drop_duplicate_nodes, sort_topologically
from gkd_deploy.fileio import file_sha256
from gkd_deploy.models.checkpoint import save_segmenter
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

CONFIG = SegmenterConfig("tiny-student", decoder="semfpn", img_size=64,
                         decoder_options={"neck_channels": 32, "head_channels": 16, "groups": 4})


def street_images(root, height: int, width: int, count: int = 4) -> torch.Tensor:
    """(count, 3, height, width) float 0..255: the top-left window of synthetic val scenes."""
    dataset = build_domains(parse_dataset_arg(f"cityscapes={root}"), "val")["cityscapes"]
    return torch.stack([dataset[i]["image"][:, :height, :width] for i in range(count)]).float()


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return build_segmenter(CONFIG).eval()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    # 128x64 (width x height) scenes: a 64x64 window and a 64x96 window both fit.
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), train=0, val=4, target=0, size=(128, 64), workers=1)


@pytest.fixture(scope="module")
def images(scenes):
    return street_images(scenes.cityscapes, 64, 64)


@pytest.fixture(scope="module")
def exported(segmenter, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    checkpoint = save_segmenter(segmenter, folder / "segmenter.safetensors")
    return export_onnx(segmenter, folder / "model-fp32.onnx", source_checkpoint=checkpoint), checkpoint


@pytest.fixture(scope="module")
def exported_fp16(exported):
    fp32_path, _ = exported
    return convert_fp16(fp32_path, fp32_path.with_name("model-fp16.onnx"))


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_fp32_export_loads_with_a_free_batch_and_matches_pytorch(exported, segmenter, images):
    path, _ = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.ir_version <= 10, "onnxruntime 1.31 and TensorRT 10 refuse newer IR versions"
    runner = session(path)
    (model_input,) = runner.get_inputs()
    assert model_input.name == "images" and model_input.type == "tensor(float)"
    assert model_input.shape[1:] == [3, 64, 64] and isinstance(model_input.shape[0], str)
    assert [output.name for output in runner.get_outputs()] == ["scores", "labels"]
    for batch in (1, 3):
        scores, labels = runner.run(None, {"images": images[:batch].numpy()})
        assert scores.shape == (batch, 19, 64, 64) and scores.dtype == np.float32
        assert labels.shape == (batch, 64, 64) and labels.dtype == np.uint8  # one byte per pixel to copy back
    report = check_parity(path, segmenter, images)
    assert report.precision == "fp32" and report.images == 4 and report.pixels == 4 * 64 * 64
    assert report.max_abs_diff < 1e-5
    assert report.pixel_agreement == 100.0
    assert_parity(report)
    assert "fp32" in str(report) and "%" in str(report)


def test_metadata_round_trip(exported):
    path, checkpoint = exported
    metadata = read_onnx_metadata(path)
    assert metadata.precision == "fp32"
    assert metadata.input_size == (64, 64)
    assert metadata.input_name == "images" and metadata.outputs == ("scores", "labels")
    assert metadata.layout == "NCHW RGB float32 0-255, normalisation inside the graph"
    assert metadata.class_names == CITYSCAPES.names and metadata.palette == CITYSCAPES.palette
    assert metadata.class_set == CITYSCAPES
    assert SegmenterConfig.from_dict(metadata.segmenter) == CONFIG
    assert metadata.source_sha256 == file_sha256(checkpoint)
    assert metadata.source_checkpoint == str(checkpoint.resolve())
    assert metadata.calibration is None
    assert len(metadata.extra["normalisation"]["mean"]) == 3


def test_export_at_another_size_matches_pytorch_at_that_size(segmenter, scenes, tmp_path):
    pos_embed = segmenter.encoder.backbone.pos_embed.detach().clone()
    path = export_onnx(segmenter, tmp_path / "wide.onnx", input_size=(64, 96))
    assert read_onnx_metadata(path).input_size == (64, 96)
    assert session(path).get_inputs()[0].shape[1:] == [3, 64, 96]
    # PyTorch resamples its position embedding for the 4x6 grid on every call; the file has it baked in.
    report = check_parity(path, segmenter, street_images(scenes.cityscapes, 64, 96, count=2))
    assert report.max_abs_diff < 1e-5 and report.pixel_agreement == 100.0
    # Export works on a copy: the caller's model keeps its 4x4 grid.
    assert torch.equal(segmenter.encoder.backbone.pos_embed, pos_embed)
    assert tuple(segmenter.encoder.backbone.patch_embed.grid_size) == (4, 4)


def test_fp16_keeps_float32_io_and_sensitive_ops(exported_fp16, segmenter, images):
    model = onnx.load(str(exported_fp16))
    element = {value.name: value.type.tensor_type.elem_type for value in model.graph.input}
    element |= {value.name: value.type.tensor_type.elem_type for value in model.graph.output}
    assert element == {"images": TensorProto.FLOAT, "scores": TensorProto.FLOAT, "labels": TensorProto.UINT8}
    assert any(tensor.data_type == TensorProto.FLOAT16 for tensor in model.graph.initializer)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {value.name: value.type.tensor_type.elem_type for value in inferred.graph.value_info}
    types |= {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    sensitive = [node for node in model.graph.node
                 if node.op_type in ("LayerNormalization", "Softmax", "InstanceNormalization")]
    assert {node.op_type for node in sensitive} == {"LayerNormalization", "Softmax", "InstanceNormalization"}
    for node in sensitive:
        assert types[node.input[0]] == TensorProto.FLOAT, f"{node.name} runs in fp16"
    assert read_onnx_metadata(exported_fp16).precision == "fp16"
    assert read_onnx_metadata(exported_fp16).class_names == CITYSCAPES.names
    report = check_parity(exported_fp16, segmenter, images)
    assert 0 < report.max_abs_diff < PRECISIONS["fp16"].parity.max_abs_diff
    assert report.pixel_agreement >= PRECISIONS["fp16"].parity.min_pixel_agreement
    assert_parity(report)
    with pytest.raises(ExportError, match="convert the fp32 export"):
        convert_fp16(exported_fp16, exported_fp16.with_name("twice.onnx"))


def test_graph_repair_sorts_and_deduplicates_converter_casts():
    # What the fp16 converter leaves: a Cast appended after its consumers, and written twice.
    cast = helper.make_node("Cast", ["x"], ["x32"], name="x_cast", to=TensorProto.FLOAT)
    copy = onnx.NodeProto.FromString(cast.SerializeToString())
    square_roots = [helper.make_node("Sqrt", ["x32"], [name], name=name) for name in ("a", "b")]
    graph = helper.make_graph(
        [*square_roots, helper.make_node("Add", ["a", "b"], ["y"], name="y"), cast, copy], "converted", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string="about")
    helper.set_model_props(model, {"gkd.metadata": "{}"})
    drop_duplicate_nodes(model.graph)
    sort_topologically(model)
    assert [node.name for node in model.graph.node] == ["x_cast", "a", "b", "y"]
    assert model.doc_string == "about" and [p.key for p in model.metadata_props] == ["gkd.metadata"]  # kept
    model.ir_version = onnx_io.minimal_ir_version(model)
    onnx.checker.check_model(model)
    runner = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (result,) = runner.run(None, {"x": np.array([4, 9], dtype=np.float16)})
    np.testing.assert_allclose(result, [4.0, 6.0])


def test_graph_repair_refuses_a_cycle():
    loop = [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")]
    graph = helper.make_graph(loop, "cyclic", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    with pytest.raises(ExportError, match="cannot sort the converted graph.*please report it"):
        sort_topologically(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_read_onnx_metadata_refuses_foreign_files(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("these are not the weights you are looking for\n")
    with pytest.raises(ModelError, match="not an ONNX file"):
        read_onnx_metadata(text)
    with pytest.raises(ModelError, match="not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    with pytest.raises(ModelError, match="no gkd metadata"):
        read_onnx_metadata(plain)


def test_failed_export_leaves_nothing_behind(segmenter, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot write"):
        export_onnx(segmenter, blocker / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]

    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous good export")

    def reject(model, **options):
        raise onnx.checker.ValidationError("simulated checker failure")

    monkeypatch.setattr(onnx_io.onnx.checker, "check_model", reject)
    with pytest.raises(ExportError, match="simulated checker failure"):
        export_onnx(segmenter, target)
    assert target.read_bytes() == b"the previous good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "model.onnx"]


def test_export_arguments_are_checked(segmenter, tmp_path):
    with pytest.raises(ExportError, match="multiples of the patch size 16"):
        export_onnx(segmenter, tmp_path / "m.onnx", input_size=(64, 70))
    with pytest.raises(ExportError, match="opset 11"):
        export_onnx(segmenter, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ExportError, match="source checkpoint"):
        export_onnx(segmenter, tmp_path / "m.onnx", source_checkpoint=tmp_path / "missing.safetensors")
    assert not list(tmp_path.iterdir())


def test_assert_parity_fails_over_tolerance():
    drifted = ParityReport(precision="fp32", images=2, pixels=100, max_abs_diff=0.5, mean_abs_diff=0.1,
                           pixel_agreement=97.0)
    with pytest.raises(ExportError, match="max score difference 0.5 > 0.001; pixel agreement 97.00% < 99.90%"):
        assert_parity(drifted)
    assert_parity(drifted, "int8")  # int8 checks labels only, and 97% is within its bound
    with pytest.raises(ExportError, match="no parity tolerance"):
        assert_parity(drifted, "int4")


@pytest.mark.parametrize("option, value, message", [
    ("--target", "foo", "unknown int8 target 'foo'; use one of tensorrt, onnxruntime"),
    ("--remainder", "bf8", "unknown int8 remainder precision 'bf8'; use one of fp16, fp32"),
])
def test_export_refuses_an_unknown_int8_target_or_remainder_before_writing(option, value, message, exported, tmp_path,
                                                                          capsys, monkeypatch):
    from gkd_deploy.cli.app import main

    monkeypatch.delenv("GKD_DEBUG", raising=False)
    _, checkpoint = exported
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(checkpoint), "--precision", "int8", option, value, "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1
    assert message in error and len(error.splitlines()) == 1, error
    assert not out.exists()


def test_export_model_passes_target_and_remainder_to_the_int8_file(exported, scenes, tmp_path):
    from gkd_deploy.exporters.pipeline import export_model

    _, checkpoint = exported
    calib = f"cityscapes={scenes.cityscapes}"
    made = {}
    for target, remainder in (("tensorrt", None), ("onnxruntime", None), ("tensorrt", "fp32")):
        outcome = export_model(checkpoint, precisions=("int8",), calib=calib, calib_count=4, check_count=4,
                               target=target, remainder=remainder, out_dir=tmp_path / f"{target}-{remainder}")
        (int8,) = outcome.files
        calibration = read_onnx_metadata(int8.path).calibration
        made[(target, remainder)] = (calibration["target"], calibration["remainder"])
        assert int8.parity.pixel_agreement >= PRECISIONS["int8"].parity.min_pixel_agreement
    assert made == {("tensorrt", None): ("tensorrt", "fp16"), ("onnxruntime", None): ("onnxruntime", "fp32"),
                    ("tensorrt", "fp32"): ("tensorrt", "fp32")}


def test_a_failed_fp16_remainder_leaves_no_int8_file(exported, scenes, tmp_path, monkeypatch):
    from gkd_deploy.exporters import pipeline

    def fail(int8_onnx, out_path):
        raise ExportError("simulated remainder failure")

    monkeypatch.setattr(pipeline, "convert_int8_remainder", fail)
    _, checkpoint = exported
    with pytest.raises(ExportError, match="simulated remainder failure"):
        pipeline.export_model(checkpoint, precisions=("int8",), calib=f"cityscapes={scenes.cityscapes}", calib_count=4,
                              check_count=4, out_dir=tmp_path)
    assert not list(tmp_path.glob("model-int8*.onnx"))


def test_every_export_setting_is_checked_before_the_first_file(tmp_path):
    from gkd_deploy.errors import ConfigError
    from gkd_deploy.exporters.pipeline import ExportSettings, export_model
    from gkd_deploy.models.checkpoint import save_segmenter
    from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

    bad = [({"precisions": ("fp64",)}, "unknown precision fp64"), ({"formats": ("tflite",)}, "unknown format"),
           ({"target": "openvino"}, "unknown int8 target"), ({"remainder": "bf16"}, "remainder precision"),
           ({"precisions": ("int8",), "calib_method": "mse"}, "calibration method"),
           ({"precisions": ("int8",), "calib_count": 0}, "calib_count"), ({"opset": 9}, "opset 9"),
           ({"input_size": (0, 64)}, "input size"), ({"outputs": "logits"}, "logits"), ({"check_count": 0}, "check_count")]
    for options, message in bad:
        with pytest.raises(ConfigError, match=message):
            ExportSettings(**options)
    settings = ExportSettings(precisions=("int8", "fp32"), target="onnxruntime", input_size=[32, 64])
    assert settings.precisions == ("fp32", "int8") and settings.remainder == "fp32" and settings.input_size == (32, 64)
    assert settings.sampling == "grid_sample" and ExportSettings().sampling == "gather"
    # int8 of a bare checkpoint with no calibration data: refused before fp32 is written.
    checkpoint = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=32)), tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="int8 needs calibration images"):
        export_model(checkpoint, precisions=("fp32", "int8"))
    assert not (tmp_path / "export").exists()
