"""Shared fixtures: seeded runs, markers for GPU and TensorRT tests skipped where absent."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

# Keep tests from reaching the network for weights: a missing file must fail fast.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_collection_modifyitems(config, items):
    has_gpu = torch.cuda.is_available()
    has_tensorrt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "tensorrt" in item.keywords and not has_tensorrt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (pip install 'gkd-deploy[tensorrt]')"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def one_thread(_seed):
    """For tests of tiny tensors (`pytestmark = pytest.mark.usefixtures("one_thread")`): a second
    thread gains nothing there, and on a busy shared machine its spin-waiting at every op can
    stretch a one-second test to a minute. (After the seed fixture, which sets two threads.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
