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
from gkd_deploy.calib.placement import name_nodes, place_qdq
from gkd_deploy.calib.images import fixed_size_window
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import DataError
from gkd_deploy.precision import PRECISIONS
from gkd_deploy.exporters import ExportError, assert_parity, check_parity, convert_fp16, export_onnx
from gkd_deploy.exporters import read_onnx_metadata
from gkd_deploy.exporters.fp16 import convert_int8_remainder
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


@pytest.fixture(scope="module")
def onnxruntime_int8_path(fp32_path, calibration, tmp_path_factory):
    return quantize_int8(fp32_path, fp32_path.with_name("model-int8-onnxruntime.onnx"), calibration,
                         target="onnxruntime", cache_dir=tmp_path_factory.mktemp("cache"))


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output}


def dequantized_inputs(model: onnx.ModelProto) -> set[tuple[str, int]]:
    """(node name, input index) of every input read from a DequantizeLinear."""
    made_by = producers(model)
    return {(node.name, index) for node in model.graph.node for index, name in enumerate(node.input)
            if name in made_by and made_by[name].op_type == "DequantizeLinear"}


def quantized_source(model: onnx.ModelProto, node: onnx.NodeProto, index: int) -> str:
    """The float tensor behind the Q/DQ pair that `node` reads at `index`."""
    made_by = producers(model)
    return made_by[made_by[node.input[index]].input[0]].input[0]


def of_type(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == op_type]


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


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


def test_int8_is_explicit_symmetric_qdq_with_per_channel_weights(int8_path, segmenter, parity_images):
    model = onnx.load(str(int8_path))
    values = constants(model)
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
    used = {name for node in model.graph.node for name in node.input}
    assert all(t.name in used for t in model.graph.initializer), "a float copy of a quantized weight is left behind"
    assert qdq_violations(model) == []

    metadata = read_onnx_metadata(int8_path)
    assert metadata.precision == "int8"
    assert metadata.calibration["method"] == "minmax" and metadata.calibration["images"] == 8
    assert metadata.calibration["target"] == "tensorrt" and metadata.calibration["remainder"] == "fp32"
    assert metadata.calibration["quantized_op_types"] == ["Add", "Conv", "LayerNormalization", "MatMul", "Resize"]
    assert "cityscapes" in metadata.calibration["domains"]
    runner = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    scores, labels = runner.run(None, {"images": parity_images[:3].numpy()})
    assert scores.shape == (3, 19, 64, 64) and labels.shape == (3, 64, 64)
    report = check_parity(int8_path, segmenter, parity_images)
    assert report.pixel_agreement >= PRECISIONS["int8"].parity.min_pixel_agreement
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
    assert len(read_onnx_metadata(path).calibration["quantized_op_types"]) > 3


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
    assert read_onnx_metadata(path).calibration["method"] == method
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


def test_tensorrt_placement_is_modelopts_for_a_vit(int8_path):
    model = onnx.load(str(int8_path))
    quantized, values = dequantized_inputs(model), constants(model)
    matmuls, convs = of_type(model, "MatMul"), of_type(model, "Conv")
    # Every matrix product reads int8 on both inputs: the 4 linear layers of each of the 4 blocks
    # (weights) and the 2 attention products Q*K^T and softmax*V (two activations).
    made_by = producers(model)
    attention = [n for n in matmuls if made_by[n.input[1]].input[0] not in values]
    assert len(matmuls) == 24 and len(attention) == 8 and len(convs) == 17
    assert all((n.name, 0) in quantized and (n.name, 1) in quantized for n in matmuls + convs)
    # Softmax, GELU (Div, Erf, Mul), the GroupNorm's InstanceNormalization and Relu: no Q/DQ of their
    # own; Softmax's output is quantized for softmax*V.
    for node in model.graph.node:
        if node.op_type in ("Softmax", "Erf", "Div", "InstanceNormalization", "Relu", "Mul"):
            assert not any((node.name, i) in quantized for i in range(len(node.input))), node.name
    for softmax in of_type(model, "Softmax"):
        assert {n.op_type for n in model.graph.node if softmax.output[0] in n.input} == {"QuantizeLinear"}
    # Residual Adds: the branch out of a matrix product (through its bias Add) reads int8, the skip input float.
    residual = [n for n in of_type(model, "Add") if n.name.startswith("/segmenter/blocks.") and n.name.count("/") == 3]
    assert len(residual) == 8
    for add in residual:
        assert (add.name, 1) in quantized and (add.name, 0) not in quantized, add.name
        assert quantized_source(model, add, 1).endswith(("/attn/proj/Add_output_0", "/mlp/fc2/Add_output_0"))
    # The FPN's top-down Adds: the lateral convolution's output reads int8, the upsampled map float.
    top_down = [(n, [i for i in range(2) if (n.name, i) in quantized]) for n in of_type(model, "Add")
                if n.name.startswith("/segmenter/decoder/")]
    top_down = [(n, read) for n, read in top_down if read]
    assert len(top_down) == 3
    for add, read in top_down:
        assert read == [0] and "/lateral_convs." in quantized_source(model, add, 0), add.name
    # LayerNorm reads int8 after a residual Add, not after the position embedding (block 0's norm1).
    norms = of_type(model, "LayerNormalization")
    assert [(n.name, 0) in quantized for n in norms] == [False] + [True] * 7
    # Resize reads int8, except the one that writes the scores.
    resizes = of_type(model, "Resize")
    writes_scores = [r.output[0] == "scores" for r in resizes]
    assert len(resizes) == 16 and sum(writes_scores) == 1
    assert [(r.name, 0) in quantized for r in resizes] == [not flag for flag in writes_scores]


def _graph(nodes, inputs, outputs, initializers):
    graph = onnx.helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    name_nodes(model)
    return model


def test_tensorrt_placement_leaves_masked_or_long_attention_gemv_and_thin_convs_in_float():
    make, value = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    weight = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    vector_weight = numpy_helper.from_array(np.ones((16, 1), np.float32), "w_column")
    narrow_weight = numpy_helper.from_array(np.ones((16, 8), np.float32), "w_narrow")  # N = 8 < 16
    thin = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "thin")
    nodes = [
        make("MatMul", ["x", "w"], ["q"], name="linear"),
        make("Transpose", ["q"], ["k"], name="transpose", perm=[0, 2, 1]),
        make("MatMul", ["q", "k"], ["logits"], name="scores"),
        make("Add", ["logits", "mask"], ["masked"], name="mask"),
        make("Softmax", ["masked"], ["weights"], name="softmax", axis=-1),
        make("MatMul", ["weights", "q"], ["attended"], name="context"),
        make("MatMul", ["attended", "w_column"], ["column"], name="gemv"),
        make("MatMul", ["attended", "w_narrow"], ["narrow_out"], name="narrow"),
        make("Conv", ["image", "thin"], ["features"], name="thin_conv"),
    ]
    model = _graph(nodes, [value("x", onnx.TensorProto.FLOAT, [1, 16, 16]),
                           value("mask", onnx.TensorProto.FLOAT, [1, 16, 16]),
                           value("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                   [value(name, onnx.TensorProto.FLOAT, None) for name in ("column", "narrow_out", "features")],
                   [weight, vector_weight, narrow_weight, thin])
    placement = place_qdq(model, "tensorrt")
    readers = {name for sites in placement.activations.values() for name, _ in sites} | {n for n, _ in placement.weights}
    assert readers == {"linear"}
    assert placement.weights == {("linear", 1): 1}
    # Without the mask the attention products are quantized like any other.
    unmasked = [n for n in nodes if n.name != "mask"]
    unmasked[3] = make("Softmax", ["logits"], ["weights"], name="softmax", axis=-1)
    model = _graph(unmasked, [value("x", onnx.TensorProto.FLOAT, [1, 16, 16]),
                              value("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                   [value(name, onnx.TensorProto.FLOAT, None) for name in ("column", "narrow_out", "features")],
                   [weight, vector_weight, narrow_weight, thin])
    placement = place_qdq(model, "tensorrt")
    assert {name for sites in placement.activations.values() for name, _ in sites} == {"linear", "scores", "context"}
    assert placement.activations["weights"] == {("context", 0)}
    # Over 512 tokens TensorRT has no int8 attention kernel: the products stay float again.
    long = _graph(unmasked, [value("x", onnx.TensorProto.FLOAT, [1, 513, 16]),
                             value("image", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                  [value(name, onnx.TensorProto.FLOAT, None) for name in ("column", "narrow_out", "features")],
                  [weight, vector_weight, narrow_weight, thin])
    placement = place_qdq(long, "tensorrt")
    assert {name for sites in placement.activations.values() for name, _ in sites} == {"linear"}
    assert "scores" in {name for sites in place_qdq(long, "onnxruntime").activations.values() for name, _ in sites}


def test_fp16_remainder_runs_the_rest_in_fp16_and_still_matches(int8_path, segmenter, parity_images, tmp_path):
    fp32_rest = onnx.load(str(int8_path))
    assert onnx.TensorProto.FLOAT16 not in element_types(fp32_rest).values()
    path = convert_int8_remainder(int8_path, tmp_path / "int8-fp16.onnx")
    model = onnx.load(str(path))
    types = element_types(model)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    assert {types[v.name] for v in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert types["scores"] == onnx.TensorProto.FLOAT
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Conv", "Add", "Resize", "Transpose", "Erf", "Relu", "DequantizeLinear"):
            assert types[node.output[0]] == onnx.TensorProto.FLOAT16, f"{node.op_type} {node.name}"
        elif node.op_type in ("LayerNormalization", "Softmax", "InstanceNormalization"):
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, f"{node.op_type} {node.name} (kept fp32)"
        if node.op_type == "QuantizeLinear":
            assert types[node.input[1]] == onnx.TensorProto.FLOAT16
    assert len(dequantized_inputs(model)) >= len(dequantized_inputs(fp32_rest)) - len(of_type(model, "LayerNormalization"))
    assert qdq_violations(model) == []
    calibration = read_onnx_metadata(path).calibration
    assert calibration["remainder"] == "fp16" and calibration["target"] == "tensorrt"
    report = check_parity(path, segmenter, parity_images)
    assert_parity(report)
    with pytest.raises(ExportError, match="not an int8 file with an fp32 remainder"):
        convert_int8_remainder(path, tmp_path / "again.onnx")


def test_onnxruntime_placement_is_what_its_cpu_kernels_run_in_int8(onnxruntime_int8_path, segmenter, parity_images,
                                                                    tmp_path):
    model = onnx.load(str(onnxruntime_int8_path))
    quantized, made_by = dequantized_inputs(model), producers(model)
    conv_outputs = {n.output[0] for n in of_type(model, "Conv")}
    for node in of_type(model, "MatMul") + of_type(model, "Conv"):
        assert (node.name, 0) in quantized and (node.name, 1) in quantized, node.name
    # Everything else that reads int8 reads a convolution's output (what makes it a QLinearConv).
    others = {(name, index) for name, index in quantized
              if not name.endswith("_QuantizeLinear") and next(n for n in model.graph.node if n.name == name).op_type
              not in ("MatMul", "Conv")}
    assert others and all(quantized_source(model, next(n for n in model.graph.node if n.name == name), index)
                          in conv_outputs for name, index in others)
    assert not any(made_by.get(n.input[0]) is not None and made_by[n.input[0]].op_type == "DequantizeLinear"
                   for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax", "Erf"))
    # uint8 activations (zero point 128: onnxruntime's x86 kernels are U8S8), int8 weights (zero point 0).
    values = constants(model)
    for node in of_type(model, "QuantizeLinear"):
        assert values[node.input[2]].dtype == np.uint8 and values[node.input[2]] == 128, node.name
    for node in of_type(model, "DequantizeLinear"):
        if node.input[0] in values:
            assert values[node.input[2]].dtype == np.int8 and not values[node.input[2]].any(), node.name
    calibration = read_onnx_metadata(onnxruntime_int8_path).calibration
    assert calibration["target"] == "onnxruntime" and calibration["remainder"] == "fp32"
    assert_parity(check_parity(onnxruntime_int8_path, segmenter, parity_images))
    # onnxruntime fuses every Q/DQ'd product into an int8 kernel: no float MatMul or Conv is left.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(onnxruntime_int8_path), options, providers=["CPUExecutionProvider"])
    kernels = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert {"QLinearConv", "MatMulIntegerToFloat"} <= kernels
    assert not {"MatMul", "Conv", "FusedConv", "FusedMatMul"} & kernels, kernels


def test_parity_check_fails_an_int8_file_whose_scales_clip(int8_path, segmenter, parity_images, tmp_path):
    model = onnx.load(str(int8_path))
    activation_scales = {n.input[1] for n in of_type(model, "QuantizeLinear")}
    for tensor in model.graph.initializer:
        if tensor.name in activation_scales:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) / 4, tensor.name))
    onnx.save(model, str(tmp_path / "clipped.onnx"))
    report = check_parity(tmp_path / "clipped.onnx", segmenter, parity_images)
    assert report.pixel_agreement < PRECISIONS["int8"].parity.min_pixel_agreement
    with pytest.raises(ExportError, match="does not match PyTorch"):
        assert_parity(report)
