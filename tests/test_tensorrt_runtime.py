"""The TensorRT predictor against stand-ins for TensorRT's runtime API and NVIDIA's cuda-python,
where neither a GPU nor TensorRT is present.

The stand-ins are written as packages (`tensorrt`, `cuda.bindings.runtime`) into a folder put
first on the import path, so that a fresh interpreter running `gkd infer` on an engine finds them
too. The CUDA stand-in allocates host memory and hands out its real addresses, so the predictor's
copies (`cudaMemcpyAsync`) and the engine's reads and writes are real memory traffic; the "engine"
is the ONNX file's bytes and runs them with ONNX Runtime on the bound input address. What the
stand-ins check: every tensor has an address before `execute_async_v3`, shapes are set, buffers
are large enough, and everything allocated is freed on `release`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap

import numpy as np
import pytest

from tests.fixtures_models import tiny_run
from tests.test_edge_install import probe
from tests.test_tensorrt_standin import stand_in_tensorrt
from gkd_deploy.errors import ModelError
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.exporters.tensorrt import EngineOptions, build_engine
from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor

CUDART = '''
"""Stand-in for cuda-python's runtime bindings: host memory at real addresses."""
import ctypes
import enum

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:
    def __init__(self, value):
        self.value = value

    def __int__(self):
        return self.value


DEVICES = 1
ALLOCATIONS = {}  # address -> the host array behind it
STREAMS = set()
COPIES = []  # (kind, bytes)


def cudaGetDeviceCount():
    if DEVICES == 0:
        return cudaError_t.cudaErrorNoDevice, 0
    return cudaError_t.cudaSuccess, DEVICES


def cudaSetDevice(index):
    return (cudaError_t.cudaSuccess,) if index < DEVICES else (cudaError_t.cudaErrorInvalidValue,)


def cudaGetErrorString(error):
    return cudaError_t.cudaSuccess, {100: b"no CUDA-capable device is detected"}.get(int(error), b"invalid value")


def cudaStreamCreate():
    stream = cudaStream_t(1000 + len(STREAMS))
    STREAMS.add(stream.value)
    return cudaError_t.cudaSuccess, stream


def cudaStreamSynchronize(stream):
    return (cudaError_t.cudaSuccess if int(stream) in STREAMS else cudaError_t.cudaErrorInvalidValue,)


def cudaStreamDestroy(stream):
    STREAMS.discard(int(stream))
    return (cudaError_t.cudaSuccess,)


def cudaMalloc(nbytes):
    memory = np.zeros(nbytes, dtype=np.uint8)
    ALLOCATIONS[memory.ctypes.data] = memory
    return cudaError_t.cudaSuccess, memory.ctypes.data


def cudaMemGetInfo():
    used = sum(memory.nbytes for memory in ALLOCATIONS.values())
    return cudaError_t.cudaSuccess, (1 << 30) - used, 1 << 30


def cudaFree(address):
    return (cudaError_t.cudaSuccess if ALLOCATIONS.pop(address, None) is not None else cudaError_t.cudaErrorInvalidValue,)


def allocation_size(address):
    return ALLOCATIONS[address].nbytes


def cudaMemcpyAsync(destination, source, nbytes, kind, stream):
    device = destination if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else source
    if device not in ALLOCATIONS or allocation_size(device) < nbytes or int(stream) not in STREAMS:
        return (cudaError_t.cudaErrorInvalidValue,)
    ctypes.memmove(destination, source, nbytes)
    COPIES.append((int(kind), nbytes))
    return (cudaError_t.cudaSuccess,)
'''

TENSORRT = '''
"""Stand-in for TensorRT's runtime API (10.x and 11): the engine is an ONNX file, run by ONNX Runtime."""
import ctypes
import enum

import numpy as np
import onnxruntime

from cuda.bindings import runtime as cudart

__version__ = "10.99-stand-in"


class Logger:
    WARNING = 2

    def __init__(self, severity):
        pass


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    UINT8 = 5
    INT64 = 10


ONNX_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(uint8)": DataType.UINT8, "tensor(int64)": DataType.INT64}


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.UINT8: np.uint8, DataType.INT64: np.int64}[dtype]


class Runtime:
    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        if not data.startswith(b"\\x08"):  # an ONNX ModelProto starts with its ir_version field
            return None
        return Engine(data)


class Engine:
    def __init__(self, data):
        self.session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o for o in self.session.get_outputs()]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self.shapes = {}

    def get_tensor_name(self, index):
        return (self.inputs + [o.name for o in self.outputs])[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        kind = "tensor(float)" if name in self.inputs else next(o.type for o in self.outputs if o.name == name)
        return ONNX_TYPES[kind]

    def create_execution_context(self):
        return Context(self)


class Context:
    def __init__(self, engine):
        self.engine, self.input_shape, self.addresses = engine, None, {}

    def set_input_shape(self, name, shape):
        assert name in self.engine.inputs
        self.input_shape = tuple(shape)
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def get_tensor_shape(self, name):
        if name in self.engine.inputs:
            return self.input_shape
        if self.input_shape not in self.engine.shapes:  # TensorRT infers them; the stand-in runs once
            results = self.engine.session.run(None, {self.engine.inputs[0]: np.zeros(self.input_shape, np.float32)})
            self.engine.shapes[self.input_shape] = {o.name: r.shape for o, r in zip(self.engine.outputs, results)}
        return self.engine.shapes[self.input_shape][name]

    def execute_async_v3(self, stream_handle):
        assert isinstance(stream_handle, int) and self.input_shape is not None
        name = self.engine.inputs[0]
        count = int(np.prod(self.input_shape))
        assert cudart.allocation_size(self.addresses[name]) >= count * 4
        images = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses[name]))
        results = self.engine.session.run(None, {name: images.reshape(self.input_shape).copy()})
        for output, result in zip(self.engine.outputs, results):
            result = np.ascontiguousarray(result)
            assert cudart.allocation_size(self.addresses[output.name]) >= result.nbytes
            ctypes.memmove(self.addresses[output.name], result.ctypes.data, result.nbytes)
        return True
'''


def write_stand_ins(folder):
    """The two stand-in packages under `folder` (put it first on the import path)."""
    (folder / "cuda" / "bindings").mkdir(parents=True)
    (folder / "cuda" / "__init__.py").write_text("")
    (folder / "cuda" / "bindings" / "__init__.py").write_text("")
    (folder / "cuda" / "bindings" / "runtime.py").write_text(textwrap.dedent(CUDART))
    (folder / "tensorrt").mkdir()
    (folder / "tensorrt" / "__init__.py").write_text(textwrap.dedent(TENSORRT))
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tiny_run(tmp_path_factory.mktemp("trt-runtime-run"))
    export_model(run.path, precisions=("fp32",))
    export_model(run.path, precisions=("fp32",), outputs="labels")
    return run.export_dir


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """The stand-ins imported in this process (any real cuda / tensorrt module set aside meanwhile)."""
    folder = write_stand_ins(tmp_path / "stand-ins")
    ours = lambda name: name == "tensorrt" or name == "cuda" or name.startswith("cuda.")  # noqa: E731
    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(folder))
    import tensorrt
    from cuda.bindings import runtime

    yield tensorrt, runtime
    for name in [name for name in sys.modules if ours(name)]:  # no stand-in outlives the test
        del sys.modules[name]
    sys.modules.update(saved)


def engine_of(onnx_path, folder):
    """An 'engine' and its sidecar, written by `build_engine` through the build stand-in."""
    engine = folder / onnx_path.with_suffix(".engine").name
    module = stand_in_tensorrt([])
    saved = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = module
    try:
        build_engine(onnx_path, engine, EngineOptions(min_batch=1, opt_batch=2, max_batch=4))
    finally:
        if saved is None:
            del sys.modules["tensorrt"]
        else:
            sys.modules["tensorrt"] = saved
    return engine


def test_an_engine_gives_what_onnx_runtime_gives_and_frees_what_it_took(exported, stand_ins, tmp_path):
    from gkd_deploy.runtime.tensorrt_backend import TensorRTPredictor

    _, cudart = stand_ins
    onnx_path = exported / "model-fp32.onnx"
    engine = engine_of(onnx_path, tmp_path)
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, 64, 64)).astype(np.float32)
    reference = OnnxRuntimePredictor(onnx_path, "cpu")
    predictor = TensorRTPredictor(engine, "cuda:0")
    assert predictor.info.backend == "tensorrt" and predictor.output_dtypes["labels"] == np.uint8
    np.testing.assert_array_equal(predictor(images), reference(images))
    np.testing.assert_array_equal(predictor.labels(images), reference.labels(images))
    # A smaller batch reuses the buffers; what comes back has the batch's own shape.
    assert predictor(images[:1]).shape == reference(images[:1]).shape
    copies = len(cudart.COPIES)
    run = predictor.resident(images)
    run()
    run()
    assert len(cudart.COPIES) == copies + 1  # the images went over once, the runs copy nothing
    assert cudart.ALLOCATIONS and cudart.STREAMS
    predictor.release()
    assert not cudart.ALLOCATIONS and not cudart.STREAMS


def test_a_labels_only_engine_copies_back_only_the_labels(exported, stand_ins, tmp_path):
    from gkd_deploy.runtime.tensorrt_backend import TensorRTPredictor

    _, cudart = stand_ins
    engine = engine_of(exported / "model-fp32-labels.onnx", tmp_path)
    images = np.random.default_rng(1).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    predictor = TensorRTPredictor(engine)
    cudart.COPIES.clear()
    labels = predictor.labels(images)
    np.testing.assert_array_equal(labels, OnnxRuntimePredictor(exported / "model-fp32.onnx", "cpu").labels(images))
    assert cudart.COPIES == [(1, images.nbytes), (2, labels.nbytes)]  # uint8 labels: 1 byte a pixel
    with pytest.raises(ModelError, match="labels"):
        predictor(images)
    predictor.release()


def test_no_gpu_a_cpu_device_and_a_foreign_engine_each_get_one_line(exported, stand_ins, tmp_path, monkeypatch):
    from gkd_deploy.runtime.tensorrt_backend import TensorRTPredictor

    _, cudart = stand_ins
    engine = engine_of(exported / "model-fp32.onnx", tmp_path)
    with pytest.raises(ModelError, match="--device 'cpu' cannot run it"):
        TensorRTPredictor(engine, "cpu")
    with pytest.raises(ModelError, match=r"cuda:3 asked for, 1 visible"):
        TensorRTPredictor(engine, "cuda:3")
    foreign = tmp_path / "other.engine"
    foreign.write_bytes(b"an engine of another TensorRT version")
    (tmp_path / "other.engine.json").write_text((tmp_path / "model-fp32.engine.json").read_text())
    with pytest.raises(ModelError, match="cannot deserialize .*rebuild it from the .onnx file"):
        TensorRTPredictor(foreign)
    monkeypatch.setattr(cudart, "DEVICES", 0)
    with pytest.raises(ModelError, match="no CUDA-capable device is detected"):
        TensorRTPredictor(engine)


def test_the_engine_check_after_a_build_runs_the_torch_free_predictor(exported, stand_ins, tmp_path, monkeypatch):
    # One stand-in module with the build API and the runtime API: build_engine, then check_engine
    # through TensorRTPredictor, as `gkd export --format trt` does.
    tensorrt, cudart = stand_ins
    builder = stand_in_tensorrt([])
    for name in ("Builder", "OnnxParser", "NetworkDefinitionCreationFlag", "MemoryPoolType"):
        monkeypatch.setattr(tensorrt, name, getattr(builder, name), raising=False)
    images = np.random.default_rng(2).uniform(0, 255, (4, 3, 64, 64)).astype(np.float32)
    engine = build_engine(exported / "model-fp32.onnx", tmp_path / "checked.engine", check_images=images)
    assert engine.is_file()
    assert not cudart.ALLOCATIONS and not cudart.STREAMS  # the check's predictor gave its GPU memory back


def assert_benchmarked_without_torch(engine, tmp_path, environment):
    """`gkd benchmark` on `engine` (tensorrt, the stand-ins on the path) times it and imports no torch."""
    result = probe(["benchmark", "--model", str(engine), "--backends", "tensorrt", "--device", "cuda",
                    "--min-runs", "3", "--min-time", "0", "--warmup", "1", "--json", str(tmp_path / "b.json"),
                    "--csv", str(tmp_path / "b.csv")], tmp_path, environment)
    assert result["heavy"] == [], result
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["status"] == "ok" and row["p50_ms"] > 0 and row["compute_p50_ms"] > 0, row


def test_gkd_infer_and_benchmark_on_an_engine_import_no_torch(exported, tmp_path):
    from gkd_deploy.data.synthetic import write_synthetic

    folder = write_stand_ins(tmp_path / "stand-ins")
    engine = engine_of(exported / "model-fp32.onnx", tmp_path)
    clip = write_synthetic(tmp_path / "data", train=0, val=0, target=0, size=(128, 64), video=True, video_frames=4,
                           workers=1).video
    environment = {**os.environ, "PYTHONPATH": str(folder)}  # the stand-ins first on the import path
    result = probe(["infer", str(clip), "--model", str(engine), "--out", str(tmp_path / "seg.mp4")], tmp_path,
                   environment)
    assert result == {"code": 0, "heavy": []}
    assert (tmp_path / "seg.mp4").stat().st_size > 0
    assert_benchmarked_without_torch(engine, tmp_path, environment)


@pytest.fixture(scope="module")
def instance_exported(tmp_path_factory):
    """(checkpoint, fp32 .onnx at 64 x 64) of a tiny instance segmenter with confident heads (its
    instances clear the top-k cut, so the engine check has instances to find)."""
    import torch

    from gkd_deploy.models.checkpoint import save_instance_segmenter
    from gkd_deploy.models.instance_segmenter import build_instance_segmenter
    from tests.fixtures_models import INSTANCE_SIZE, confident_instance_heads
    from tests.test_instance_model import tiny_config

    root = tmp_path_factory.mktemp("trt-instance")
    torch.manual_seed(0)
    model = confident_instance_heads(build_instance_segmenter(tiny_config()).eval())
    checkpoint = save_instance_segmenter(model, root / "instance.safetensors")
    outcome = export_model(checkpoint, precisions=("fp32",), input_size=(INSTANCE_SIZE, INSTANCE_SIZE), check_count=1)
    return checkpoint, outcome.files[0].path


def test_an_instance_engine_gives_the_instances_onnx_runtime_gives(instance_exported, stand_ins, tmp_path):
    from gkd_deploy.runtime.loader import load_predictor
    from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimeInstancePredictor
    from gkd_deploy.runtime.tensorrt_backend import TensorRTInstancePredictor

    _, cudart = stand_ins
    onnx_path = instance_exported[1]
    predictor = load_predictor(engine_of(onnx_path, tmp_path), "cuda:0")
    assert isinstance(predictor, TensorRTInstancePredictor) and predictor.info.task == "instance"
    assert predictor.output_dtypes == {"masks": np.uint8, "classes": np.int64, "scores": np.float32}
    images = np.random.default_rng(3).uniform(0, 255, (3, 3, 64, 64)).astype(np.float32)
    masks, classes, scores = predictor(images)
    expected = OnnxRuntimeInstancePredictor(onnx_path, "cpu")(images)
    assert masks.dtype == bool and masks.shape == (3, 10, 64, 64) and classes.dtype == np.int64
    for got, want in zip((masks, classes, scores), expected):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ModelError, match="instance segmenter"):
        predictor.labels(images)
    predictor.release()
    assert not cudart.ALLOCATIONS and not cudart.STREAMS


def test_gkd_export_builds_and_checks_an_instance_engine(instance_exported, stand_ins, tmp_path, monkeypatch, caplog):
    from gkd_deploy.exporters.tensorrt import EngineCheck
    from gkd_deploy.runtime.metadata import read_sidecar_metadata

    tensorrt, cudart = stand_ins
    builder = stand_in_tensorrt([])
    for name in ("Builder", "OnnxParser", "NetworkDefinitionCreationFlag", "MemoryPoolType"):
        monkeypatch.setattr(tensorrt, name, getattr(builder, name), raising=False)
    caplog.set_level(logging.INFO, logger="gkd_deploy.exporters.tensorrt")
    outcome = export_model(instance_exported[0], precisions=("fp32",), formats=("onnx", "trt"),
                           input_size=(64, 64), check_count=4, out_dir=tmp_path)
    onnx_file, engine_file = outcome.files
    assert (engine_file.format, engine_file.outputs) == ("trt", ("masks", "classes", "scores"))
    assert engine_file.output_bytes == onnx_file.output_bytes == 10 * (64 * 64 + 12)
    assert engine_file.path.is_file() and read_sidecar_metadata(engine_file.path).task == "instance"
    (report,) = [record.args[1] for record in caplog.records if isinstance(record.args, tuple)
                 and len(record.args) == 2 and isinstance(record.args[1], EngineCheck)]
    assert report.kind == "instances" and report.instances > 0 and report.matched == 100.0
    assert report.pixel_agreement == 100.0 and report.max_abs_diff == 0.0
    assert onnx_file.parity.instances > 0  # the checked ONNX file had instances to find too
    assert not cudart.ALLOCATIONS and not cudart.STREAMS


def test_benchmarking_an_instance_engine_imports_no_torch(instance_exported, tmp_path):
    folder = write_stand_ins(tmp_path / "stand-ins")
    engine = engine_of(instance_exported[1], tmp_path)
    environment = {**os.environ, "PYTHONPATH": str(folder)}
    assert_benchmarked_without_torch(engine, tmp_path, environment)
