"""INT8: calibration sets from domain data and explicit Q/DQ files that TensorRT's rules accept."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from gkd_deploy.calib import calibration_images, qdq_violations, quantize_int8
from gkd_deploy.calib import quantize as quantize_module
from gkd_deploy.calib.images import fixed_size_window
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import DataError
from gkd_deploy.exporters import TOLERANCES, ExportError, assert_parity, check_parity, convert_fp16, export_onnx
from gkd_deploy.exporters import read_metadata
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

CONFIG = SegmenterConfig("tiny-student", decoder="semfpn", img_size=64,
                         decoder_options={"neck_channels": 32, "head_channels": 16, "groups": 4})
SENSITIVE_OPS = ("LayerNormalization", "Softmax", "InstanceNormalization")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    # Cityscapes has a train split; synthetic ACDC has only val (the fallback).
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), train=6, val=2, target=1, size=(128, 64), workers=1)


@pytest.fixture(scope="module")
def specs(scenes):
    return [f"cityscapes={scenes.cityscapes}", f"acdc={scenes.acdc}"]


@pytest.fixture(scope="module")
def calibration(specs):
    return calibration_images(specs, count=8, input_size=(64, 64), seed=0)


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return build_segmenter(CONFIG).eval()


@pytest.fixture(scope="module")
def fp32_path(segmenter, tmp_path_factory):
    return export_onnx(segmenter, tmp_path_factory.mktemp("export") / "model-fp32.onnx")


@pytest.fixture(scope="module")
def parity_images(specs):
    # Other windows than the calibration ones (another seed).
    return torch.from_numpy(calibration_images(specs, count=6, input_size=(64, 64), seed=1).images).float()


@pytest.fixture(scope="module")
def int8_path(fp32_path, calibration, tmp_path_factory):
    return quantize_int8(fp32_path, fp32_path.with_name("model-int8.onnx"), calibration,
                         cache_dir=tmp_path_factory.mktemp("cache"))


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output}


def test_calibration_images_cover_every_domain_deterministically(specs, calibration, caplog):
    assert calibration.images.shape == (8, 3, 64, 64) and calibration.images.dtype == np.uint8
    # One image from each domain in turn: cityscapes (train) and the four ACDC conditions (val).
    assert calibration.domains == ("acdc-fog", "acdc-night", "acdc-rain", "acdc-snow", "cityscapes")
    assert sum(name.startswith("cityscapes/") for name in calibration.names) == 4
    with caplog.at_level(logging.INFO, logger="gkd_deploy.calib"):
        again = calibration_images(specs, count=8, input_size=(64, 64), seed=0)
    assert np.array_equal(again.images, calibration.images) and again.names == calibration.names
    assert "calibrating with 8 images; at least 300 are recommended" in caplog.text
    assert "has no train split, using its val split" in caplog.text
    other = calibration_images(specs, count=8, input_size=(64, 64), seed=1)
    assert not np.array_equal(other.images, calibration.images)


def test_window_is_a_crop_at_the_image_scale_zero_padded_like_slide_inference():
    image = np.arange(3 * 40 * 100, dtype=np.int64).reshape(3, 40, 100).astype(np.uint8)
    window = fixed_size_window(image, (64, 32), np.random.default_rng(0))
    assert window.shape == (3, 64, 32)
    left = int(np.flatnonzero((image[0, 0] == window[0, 0, 0]) & (image[1, 0] == window[1, 0, 0]))[0])
    np.testing.assert_array_equal(window[:, :40], image[:, :, left:left + 32])
    assert not window[:, 40:].any(), "rows below the image must be zero padding"


def test_empty_calibration_folder_is_a_clear_error(tmp_path, fp32_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no calibration images in images="):
        calibration_images([f"images={tmp_path / 'empty'}"], count=4, input_size=(64, 64))
    with pytest.raises(ExportError, match="no calibration images"):
        quantize_int8(fp32_path, tmp_path / "int8.onnx", np.zeros((0, 3, 64, 64), np.uint8))
    assert not (tmp_path / "int8.onnx").exists()


def test_int8_is_explicit_symmetric_qdq_on_matrix_products_only(int8_path, segmenter, parity_images):
    model = onnx.load(str(int8_path))
    values, made_by = constants(model), producers(model)
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert quantize and dequantize
    for node in quantize + dequantize:
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    weight_nodes = [n for n in dequantize if n.input[0] in values]
    assert weight_nodes, "weights must be stored as int8 with their own DequantizeLinear"
    for node in weight_nodes:
        weight, scale = values[node.input[0]], values[node.input[1]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        assert weight.dtype == np.int8
        assert scale.ndim == 1 and scale.shape[0] == weight.shape[axis], f"{node.name}: not per output channel"
    consumers = {n.op_type for n in model.graph.node for w in weight_nodes if w.output[0] in n.input}
    assert consumers == {"Conv", "MatMul"}
    for node in quantize:
        assert values[node.input[1]].size == 1 and values[node.input[1]].ndim == 0, "activation scale not scalar"
    for node in model.graph.node:
        if node.op_type in SENSITIVE_OPS + ("Add", "Erf"):
            inputs = [made_by[name].op_type for name in node.input if name in made_by]
            assert "DequantizeLinear" not in inputs, f"{node.op_type} {node.name} reads quantized input"
    assert qdq_violations(model) == []

    metadata = read_metadata(int8_path)
    assert metadata.precision == "int8"
    assert metadata.calibration["method"] == "minmax" and metadata.calibration["images"] == 8
    assert metadata.calibration["quantized_op_types"] == ["Conv", "Gemm", "MatMul"]
    assert "cityscapes" in metadata.calibration["domains"]
    runner = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    scores, labels = runner.run(None, {"images": parity_images[:3].numpy()})
    assert scores.shape == (3, 19, 64, 64) and labels.shape == (3, 64, 64)
    report = check_parity(int8_path, segmenter, parity_images)
    assert report.pixel_agreement >= TOLERANCES["int8"].min_pixel_agreement
    assert_parity(report)


def test_quantize_sensitive_quantizes_more(fp32_path, calibration, int8_path, tmp_path):
    path = quantize_int8(fp32_path, tmp_path / "all.onnx", calibration, quantize_sensitive=True)
    model, default = onnx.load(str(path)), onnx.load(str(int8_path))
    count = lambda m: sum(n.op_type == "DequantizeLinear" for n in m.graph.node)  # noqa: E731
    assert count(model) > count(default)
    made_by = producers(model)
    assert any(made_by[n.input[0]].op_type == "DequantizeLinear" for n in model.graph.node
               if n.op_type == "LayerNormalization")
    assert qdq_violations(model) == []
    assert len(read_metadata(path).calibration["quantized_op_types"]) > 3


def test_second_export_reuses_the_calibration_cache(fp32_path, calibration, tmp_path, monkeypatch):
    calls = []
    real = quantize_module.create_calibrator

    def counting(*args, **kwargs):
        calls.append(kwargs.get("calibrate_method"))
        return real(*args, **kwargs)

    monkeypatch.setattr(quantize_module, "create_calibrator", counting)
    cache = tmp_path / "cache"
    first = quantize_int8(fp32_path, tmp_path / "first.onnx", calibration, cache_dir=cache)
    second = quantize_int8(fp32_path, tmp_path / "second.onnx", calibration, cache_dir=cache)
    assert len(calls) == 1, "the second export ran the calibrator again"
    assert first.read_bytes() == second.read_bytes()
    assert len(list(cache.glob("calibration-minmax-*.json"))) == 1
    # Other images are other statistics: the cache must not answer for them.
    quantize_int8(fp32_path, tmp_path / "third.onnx", calibration.images[:4], cache_dir=cache)
    assert len(calls) == 2


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_each_calibration_method_runs(method, fp32_path, calibration, segmenter, parity_images, tmp_path):
    path = quantize_int8(fp32_path, tmp_path / f"{method}.onnx", calibration, method=method)
    assert read_metadata(path).calibration["method"] == method
    assert qdq_violations(onnx.load(str(path))) == []
    assert_parity(check_parity(path, segmenter, parity_images))


def test_quantize_refuses_what_it_cannot_quantize(fp32_path, calibration, tmp_path):
    with pytest.raises(ExportError, match="unknown calibration method 'kl'; use one of minmax, entropy, percentile"):
        quantize_int8(fp32_path, tmp_path / "q.onnx", calibration, method="kl")
    with pytest.raises(ExportError, match=r"must be \(N, 3, 64, 64\).*\(2, 3, 32, 32\)"):
        quantize_int8(fp32_path, tmp_path / "q.onnx", np.zeros((2, 3, 32, 32), np.uint8))
    fp16 = convert_fp16(fp32_path, tmp_path / "fp16.onnx")
    with pytest.raises(ExportError, match="quantize the fp32 export"):
        quantize_int8(fp16, tmp_path / "q.onnx", calibration)
    assert not (tmp_path / "q.onnx").exists()


def test_qdq_rules_name_what_tensorrt_would_reject(int8_path):
    model = onnx.load(str(int8_path))
    quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zero_point = next(t for t in model.graph.initializer if t.name == quantize.input[2])
    zero_point.CopyFrom(numpy_helper.from_array(np.array(3, dtype=np.int8), zero_point.name))
    problems = qdq_violations(model)
    assert problems and "not int8 0" in problems[0]
