"""The runtime without torch: exported models run where only the base install is present.

Two levels: in this environment a command on an .onnx file must not import torch, timm or onnx
(a fresh interpreter, so nothing is loaded before it); and a second virtual environment with only
the base install and JetPack 6's numpy / ONNX Runtime versions runs `gkd infer` and `gkd benchmark`
on an exported model (slow: it installs from the package index).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_models import tiny_run
from gkd_deploy.exporters.pipeline import export_model

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "onnx", "torchvision", "scipy", "safetensors")
# What JetPack 6 brings or allows (Python 3.10 there; these wheels also exist for 3.11): numpy 1.26,
# NVIDIA's onnxruntime-gpu 1.20 (its CPU build from PyPI stands in), OpenCV 4.10.
EDGE_PINS = ("numpy==1.26.4", "onnxruntime==1.20.1", "opencv-python-headless==4.10.0.84")

PROBE = """
import json, sys
from gkd_deploy.cli.app import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exit:
    code = exit.code or 0
heavy = [name for name in json.loads(sys.argv[1]) if name in sys.modules]
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(model-fp32.onnx of a tiny seeded segmenter, a synthetic clip)."""
    from gkd_deploy.data.synthetic import write_synthetic

    run = tiny_run(tmp_path_factory.mktemp("edge-run"))
    export_model(run.path, precisions=("fp32",))
    data = write_synthetic(tmp_path_factory.mktemp("edge-data"), train=0, val=0, target=0, size=(128, 64),
                           video=True, video_frames=6, workers=1)
    return run.export_dir / "model-fp32.onnx", data.video


def probe(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Runs `gkd ARGS` in a fresh interpreter (with environment `env`, default this one's); its exit
    code and which heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1][len("PROBE "):])


def test_help_and_version_import_no_torch(tmp_path):
    for args in (["--version"], ["--help"], ["infer", "--help"], ["train", "--help"]):
        result = probe(args, tmp_path)
        assert result == {"code": 0, "heavy": []}, (args, result)


def test_infer_and_benchmark_on_an_onnx_file_import_no_torch(exported, tmp_path):
    model, clip = exported
    result = probe(["infer", str(clip), "--model", str(model), "--out", str(tmp_path / "seg.mp4")], tmp_path)
    assert result == {"code": 0, "heavy": []}
    assert (tmp_path / "seg.mp4").stat().st_size > 0
    result = probe(["benchmark", "--model", str(model), "--backends", "onnxruntime", "--min-runs", "3",
                    "--min-time", "0", "--warmup", "1", "--json", str(tmp_path / "b.json"),
                    "--csv", str(tmp_path / "b.csv")], tmp_path)
    assert result == {"code": 0, "heavy": []}
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["status"] == "ok" and row["p50_ms"] > 0 and row["gflops"] is None  # FLOPs are counted by torch


def test_a_training_command_in_a_runtime_install_names_the_install_it_needs():
    from gkd_deploy.cli.app import missing_install

    line = missing_install(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert "pip install 'gkd-deploy[train]'" in line
    assert "gkd-deploy[runtime]" in missing_install(ModuleNotFoundError(name="onnxruntime"))
    assert missing_install(ModuleNotFoundError(name="some_typo_module")) is None


@pytest.mark.slow
def test_the_base_install_with_jetpacks_versions_runs_infer_and_benchmark(exported, tmp_path):
    """A second venv: the wheel without its optional dependencies, JetPack-era numpy and ONNX Runtime."""
    model, clip = exported
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("gkd_deploy-*.whl"))
    venv = tmp_path / "edge"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, gkd = venv / "bin" / "python", venv / "bin" / "gkd"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(wheel), *EDGE_PINS], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            check=True).stdout
    installed = {entry["name"].lower() for entry in json.loads(listed)}
    assert not installed & {"torch", "timm", "onnx", "torchvision"}, installed
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def gkd_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(gkd), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    done = gkd_run("infer", str(clip), "--model", str(model), "--out", str(tmp_path / "seg.mp4"), "--json",
                   str(tmp_path / "infer.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "infer.json").read_text())["processed"] == 6
    done = gkd_run("benchmark", "--model", str(model), "--backends", "onnxruntime", "--batch", "1,2",
                   "--min-runs", "3", "--min-time", "0", "--warmup", "1", "--json", str(tmp_path / "b.json"),
                   "--csv", str(tmp_path / "b.csv"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert [row["status"] for row in report["rows"]] == ["ok", "ok"]
    assert report["system"]["onnxruntime"] == "1.20.1" and report["system"]["torch"] is None
    done = gkd_run("train", "--out", str(tmp_path / "run"))
    assert done.returncode == 1 and "pip install 'gkd-deploy[train]'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
