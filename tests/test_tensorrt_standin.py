"""The TensorRT build path against a stand-in `tensorrt` module, where TensorRT itself is absent.

The stand-in has only the API that TensorRT 10 and 11 both have (strongly typed networks, memory
pool limits, `build_serialized_network`); what TensorRT 11 removed (builder precision flags,
`max_workspace_size`, `build_engine`, the INT8 calibrators) is not there, so a call to it fails
here as it would there. Its "engine" is the ONNX file's bytes. The engine check is tested with
predictors standing in for a good and a wrong engine. A real TensorRT is tested in test_deploy.py
(marked: skipped where absent).
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from tests.fixtures_models import tiny_run
from gkd_deploy.errors import ExportError
from gkd_deploy.exporters.pipeline import export_model
from gkd_deploy.exporters.tensorrt import EngineOptions, build_engine, check_engine
from gkd_deploy.runtime.metadata import sidecar_path
from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimePredictor


class _Strict:
    """An object with exactly the given attributes: anything else raises AttributeError."""

    def __init__(self, **attributes) -> None:
        self.__dict__.update(attributes)


def stand_in_tensorrt(calls: list) -> types.ModuleType:
    def record(name, result=None):
        def method(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result() if callable(result) else result
        return method

    class Network(_Strict):
        pass

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0

        def parse_from_file(self, path):
            calls.append(("parse_from_file", (path,), {}))
            Parser.onnx_bytes = open(path, "rb").read()
            return True

        def get_error(self, index):
            raise AssertionError("no errors")

    class Config:
        """Strict: TensorRT 11 has no set_flag(FP16/INT8), int8_calibrator or max_workspace_size."""

        __slots__ = ("builder_optimization_level", "_profiles")

        def __init__(self):
            self._profiles = []

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", (pool, size), {}))

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)

        def create_timing_cache(self, data):
            return _Strict(serialize=lambda: b"cache")

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", (), {"ignore_mismatch": ignore_mismatch}))

    class Builder:
        __slots__ = ()

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", (flags,), {}))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return _Strict(set_shape=record("set_shape"))

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network", (), {"profiles": len(config._profiles)}))
            return memoryview(Parser.onnx_bytes)

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    module = types.ModuleType("tensorrt")
    module.__version__ = "10.99-stand-in"
    module.Logger, module.Builder, module.OnnxParser = Logger, Builder, Parser
    module.NetworkDefinitionCreationFlag = _Strict(STRONGLY_TYPED=1)
    module.MemoryPoolType = _Strict(WORKSPACE="workspace")
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tiny_run(tmp_path_factory.mktemp("trt-run"))
    export_model(run.path, precisions=("fp32",))
    return run.export_dir / "model-fp32.onnx"


def test_the_build_uses_only_the_api_tensorrt_10_and_11_share(exported, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt(calls))
    engine = build_engine(exported, tmp_path / "model-fp32.engine",
                          EngineOptions(workspace_gib=1.0, optimization_level=4, min_batch=1, opt_batch=2, max_batch=4,
                                        timing_cache=str(tmp_path / "timing.cache")))
    names = [name for name, _, _ in calls]
    assert names[:2] == ["create_network", "parse_from_file"] and "build_serialized_network" in names
    assert ("create_network", (1 << 1,), {}) in calls  # a strongly typed network: precision from the file
    assert ("set_memory_pool_limit", ("workspace", 1 << 30), {}) in calls
    assert ("set_shape", ("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64)), {}) in calls
    assert engine.read_bytes() == exported.read_bytes()  # what the builder serialised, written atomically
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["extra"]["tensorrt"] == "10.99-stand-in" and sidecar["extra"]["batch_range"] == [1, 4]
    assert (tmp_path / "timing.cache").read_bytes() == b"cache"


class _EngineStandIn:
    """An 'engine' that runs the ONNX file (a correct engine), or shifts every label (a wrong one)."""

    def __init__(self, onnx_path, wrong: bool) -> None:
        self.reference, self.wrong = OnnxRuntimePredictor(onnx_path, "cpu"), wrong
        self.info = self.reference.info

    def __call__(self, images):
        scores = self.reference(images)
        return np.roll(scores, 1, axis=1) if self.wrong else scores

    def labels(self, images):
        return self(images).argmax(1).astype(np.uint8)


def checked_good_and_wrong(stand_in, onnx_path, images, folder):
    """`check_engine` on an 'engine' standing in for a correct one (`stand_in(onnx_path, False)`),
    which is kept (its report returned), and on a wrong one, which is deleted with an ExportError
    (returned)."""
    engine = folder / "model-fp32.engine"
    reports = []
    for wrong in (False, True):
        engine.write_bytes(b"engine")
        sidecar_path(engine).write_text("{}")
        load = lambda path, wrong=wrong: stand_in(onnx_path, wrong)  # noqa: E731
        if not wrong:
            reports.append(check_engine(engine, onnx_path, images, "fp32", load=load))
            assert engine.exists()
            continue
        with pytest.raises(ExportError, match=r"does not compute what the ONNX file computes: .*it was deleted") as error:
            check_engine(engine, onnx_path, images, "fp32", load=load)
        assert not engine.exists() and not sidecar_path(engine).exists()
        reports.append(error.value)
    return reports


def test_an_engine_that_computes_something_else_is_deleted(exported, tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (5, 3, 64, 64)).astype(np.float32)
    report, _ = checked_good_and_wrong(_EngineStandIn, exported, images, tmp_path)
    assert report.images == 5 and report.pixel_agreement == 100.0 and report.max_abs_diff < 1e-6


class _InstanceEngineStandIn:
    """An instance 'engine' that runs the ONNX file with its slots in reverse order (a correct engine
    may order near-equal scores differently), or with every class moved to the next one (a wrong one)."""

    def __init__(self, onnx_path, wrong: bool) -> None:
        from gkd_deploy.runtime.onnxruntime_backend import OnnxRuntimeInstancePredictor

        self.reference, self.wrong = OnnxRuntimeInstancePredictor(onnx_path, "cpu"), wrong
        self.info = self.reference.info

    def __call__(self, images):
        masks, classes, scores = self.reference(images)
        if self.wrong:
            return masks, (classes + 1) % self.info.class_set.num_classes, scores
        return masks[:, ::-1], classes[:, ::-1], scores[:, ::-1]


def test_an_instance_engine_is_checked_instance_by_instance(tmp_path):
    import torch

    from gkd_deploy.exporters.onnx_export import export_onnx
    from gkd_deploy.exporters.pipeline import synthetic_images
    from gkd_deploy.models.instance_segmenter import build_instance_segmenter
    from tests.fixtures_models import confident_instance_heads
    from tests.test_instance_model import tiny_config

    torch.manual_seed(0)
    model = confident_instance_heads(build_instance_segmenter(tiny_config()).eval())
    onnx_path = export_onnx(model, tmp_path / "model-fp32.onnx", input_size=64)
    images = synthetic_images(4, (64, 64), seed=100).astype(np.float32)
    report, error = checked_good_and_wrong(_InstanceEngineStandIn, onnx_path, images, tmp_path)
    assert report.kind == "instances" and report.instances > 10 and report.matched == 100.0
    assert report.pixel_agreement == 100.0 and report.max_abs_diff == 0.0
    assert "instances found 0.00% <" in str(error)
