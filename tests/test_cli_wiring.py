"""Command wiring: every command, given a full set of non-default options, passes exactly these
values (types and contents) to the one library function it calls.

The library function is replaced on its home module by a recorder. Where the command's printing
needs little, the recorder returns a small stand-in result and the test also checks what is
printed; elsewhere it raises `Recorded` once the call is written down, which stops the command
before it prints. Nothing trains, exports or reads data here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gkd_deploy.cli.app import app
from gkd_deploy.cli.console import track
from gkd_deploy.cli.progress import TrainingDisplay
from gkd_deploy.training.config import TrainConfig

runner = CliRunner()

_RAISE = object()


class Recorded(Exception):
    """Raised by a recorder after it wrote its call down: the command stops there."""


@dataclass
class Calls:
    """What a recorder was called with, one (args, kwargs) pair per call."""

    made: list[tuple[tuple, dict[str, Any]]] = field(default_factory=list)

    @property
    def only(self) -> tuple[tuple, dict[str, Any]]:
        assert len(self.made) == 1, f"expected one call, got {len(self.made)}"
        return self.made[0]


def record(monkeypatch, target: str, returns: Any = _RAISE) -> Calls:
    """Replace `target` ("package.module.function") by a recorder; it returns `returns`, or raises
    `Recorded` when none is given."""
    calls = Calls()

    def recorder(*args, **kwargs):
        calls.made.append((args, kwargs))
        if returns is _RAISE:
            raise Recorded(target)
        return returns

    monkeypatch.setattr(target, recorder)
    return calls


def invoke(argv: list[str], *, stops: bool = True):
    """Run `gkd ARGV`; `stops`: the recorder raised (the command got as far as the library call)."""
    result = runner.invoke(app, argv)
    if stops:
        assert isinstance(result.exception, Recorded), (result.output, result.exception)
    else:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_every_command_has_a_wiring_test():
    """A command added to `gkd` needs its test here: the names below are the ones tested."""
    tested = {"train", "eval", "export", "validate", "infer", "benchmark", "demo", "compare", "models", "data"}
    registered = {command.name for command in app.registered_commands}
    registered |= {group.name for group in app.registered_groups}
    assert registered == tested
    subcommands = {group.name: {command.name for command in group.typer_instance.registered_commands}
                   for group in app.registered_groups}
    assert subcommands == {"models": {"import"}, "data": {"synthetic"}}


# --- gkd train ------------------------------------------------------------------------------------

TRAIN_CONFIG = "stage3: {steps: 55, crop_size: 96}\nlog_every: 3\n"


def test_train_passes_every_option_into_the_config_and_the_run(monkeypatch, tmp_path):
    from gkd_deploy.cli import console

    calls = record(monkeypatch, "gkd_deploy.training.trainer.run_training")
    config_file = tmp_path / "train.yaml"
    config_file.write_text(TRAIN_CONFIG)
    invoke(["train", "--teacher", "tiny-teacher", "--student", "tiny-student", "--proxy", "images=/data/proxy",
            "--source", "cityscapes=/data/cs", "--targets", "acdc:fog=/data/acdc,bdd100k=/data/bdd",
            "--stages", "1,2,3", "--config", str(config_file), "--preset", "paper", "--method", "mse",
            "--out", str(tmp_path / "run"), "--devices", "2", "--no-pretrained",
            "--teacher-weights", "weights/teacher.safetensors", "--student-weights", "weights/student.pth",
            "--decoder", "semfpn", "--label-fraction", "1/4", "--seed", "7", "--device", "cpu", "--workers", "3"])
    (config, run_path), kwargs = calls.only
    assert run_path == tmp_path / "run" and isinstance(run_path, Path)
    assert kwargs["devices"] == 2 and kwargs["resume"] is False
    assert isinstance(kwargs["callbacks"], TrainingDisplay) and kwargs["make_callbacks"] is TrainingDisplay
    assert kwargs["track"] is console.track
    assert (config.teacher, config.student) == ("tiny-teacher", "tiny-student")
    assert config.pretrained is False
    assert config.teacher_weights == "weights/teacher.safetensors" and config.student_weights == "weights/student.pth"
    assert config.proxy == ("images=/data/proxy",) and config.source == ("cityscapes=/data/cs",)
    assert config.targets == ("acdc:fog=/data/acdc", "bdd100k=/data/bdd")
    assert config.stages == (1, 2, 3)
    assert config.stage1.method == config.stage2.method == "mse"
    assert config.stage3.decoder == "semfpn" and config.stage3.label_fraction == 0.25
    assert (config.seed, config.device, config.workers) == (7, "cpu", 3)
    # The preset under the file under the options: the paper's lengths, the file's stage 3.
    assert (config.stage1.epochs, config.stage1.batch_size, config.stage2.epochs) == (100, 512, 300)
    assert (config.stage3.steps, config.stage3.crop_size, config.log_every) == (55, 96, 3)


def test_train_options_of_one_stage_setting_keep_that_stages_other_defaults(monkeypatch, tmp_path):
    # --method sets stage1.method and stage2.method; before, the rest of each stage fell back to
    # the class defaults, so stage 1 lost the authors' patch 14 and stage 2 its 512 px / batch 16.
    calls = record(monkeypatch, "gkd_deploy.training.trainer.run_training")
    invoke(["train", "--proxy", "images=/data/proxy", "--source", "cityscapes=/data/cs", "--method", "fitnets",
            "--out", str(tmp_path / "run")])
    (config, _), _ = calls.only
    defaults = TrainConfig()
    assert config.stage1 == dataclasses.replace(defaults.stage1, method="fitnets")
    assert config.stage2 == dataclasses.replace(defaults.stage2, method="fitnets")
    assert (config.stage1.patch_size, config.stage2.img_size, config.stage2.batch_size) == (14, 512, 16)
    # The same for an instance run: --decoder keeps the teacher's ViT-B and the student's ViT-S.
    invoke(["train", "--task", "instance", "--source", "cityscapes=/data/cs", "--decoder", "mask2former-edge",
            "--out", str(tmp_path / "instance")])
    (config, _), _ = calls.made[-1]
    assert (config.teacher.encoder, config.student.encoder) == ("vit-b", "vit-s")
    assert config.teacher.decoder == config.student.decoder == "mask2former-edge"


def test_train_with_a_recipe_passes_the_recipes_config(monkeypatch, tmp_path):
    from gkd_deploy.training.config import load_train_config
    from gkd_deploy.training.recipes import apply_recipe

    calls = record(monkeypatch, "gkd_deploy.training.trainer.run_training")
    invoke(["train", "--teacher", "tiny-teacher", "--student", "tiny-student", "--source", "cityscapes=/data/cs",
            "--recipe", "one-stage-kd", "--out", str(tmp_path / "run")])
    (config, _), _ = calls.only
    base = load_train_config(None, {"teacher": "tiny-teacher", "student": "tiny-student",
                                    "source": "cityscapes=/data/cs", "stages": [3]})
    assert config == apply_recipe(base, "one-stage-kd")
    assert config.stages == (3,) and config.stage3.distill_method == "fitnets" and config.stage3.encoder_lr > 0


def test_train_resume_passes_only_the_run_folder(monkeypatch, tmp_path):
    calls = record(monkeypatch, "gkd_deploy.training.trainer.run_training")
    invoke(["train", "--resume", str(tmp_path / "run"), "--devices", "3"])
    (config, run_path), kwargs = calls.only
    assert config is None and run_path == tmp_path / "run" and isinstance(run_path, Path)
    assert kwargs["resume"] is True and kwargs["devices"] == 3


# --- gkd eval / validate --------------------------------------------------------------------------

def test_eval_passes_every_option_as_settings(monkeypatch, tmp_path):
    from gkd_deploy.evaluation.settings import EvalSettings

    calls = record(monkeypatch, "gkd_deploy.evaluation.runner.evaluate_model")
    invoke(["eval", str(tmp_path / "run"), "--targets", "cityscapes=/a,acdc=/b", "--split", "train",
            "--mode", "whole", "--crop", "256", "--stride", "128", "--device", "cpu", "--workers", "2",
            "--per-class", "--json", str(tmp_path / "report.json")])
    (model, targets, settings), kwargs = calls.only
    assert model == tmp_path / "run" and isinstance(model, Path)
    assert targets == "cityscapes=/a,acdc=/b"
    assert settings == EvalSettings(split="train", mode="whole", crop=256, stride=128, device="cpu", workers=2,
                                    json_path=tmp_path / "report.json")
    assert isinstance(settings.json_path, Path)
    assert kwargs == {"track": track}


def test_eval_and_validate_default_to_the_default_workers(monkeypatch, tmp_path):
    from gkd_deploy.evaluation.settings import EvalSettings, ValidateSettings
    from gkd_deploy.training.config import default_workers

    evaluated = record(monkeypatch, "gkd_deploy.evaluation.runner.evaluate_model")
    validated = record(monkeypatch, "gkd_deploy.evaluation.validation.validate_export")
    invoke(["eval", str(tmp_path / "run")])
    invoke(["validate", str(tmp_path / "model.onnx")])
    (_, targets, settings), _ = evaluated.only
    assert targets is None and settings == EvalSettings(workers=default_workers())
    (_, targets, settings), _ = validated.only
    assert targets is None and settings == ValidateSettings(workers=default_workers())


def test_validate_passes_every_option_as_settings(monkeypatch, tmp_path):
    from gkd_deploy.evaluation.settings import ValidateSettings

    calls = record(monkeypatch, "gkd_deploy.evaluation.validation.validate_export")
    invoke(["validate", str(tmp_path / "model-int8.onnx"), "--targets", "acdc=/data/acdc",
            "--reference", str(tmp_path / "run"), "--tolerance", "0.5", "--split", "train", "--device", "cpu",
            "--workers", "1", "--json", str(tmp_path / "validation.json")])
    (model, targets, settings), kwargs = calls.only
    assert model == tmp_path / "model-int8.onnx" and isinstance(model, Path) and targets == "acdc=/data/acdc"
    assert settings == ValidateSettings(reference=tmp_path / "run", tolerance=0.5, split="train", device="cpu",
                                        workers=1, json_path=tmp_path / "validation.json")
    assert isinstance(settings.reference, Path) and isinstance(settings.tolerance, float)
    assert kwargs == {"track": track}


def validation_outcome(tmp_path, delta: float):
    from gkd_deploy.evaluation.validation import DomainComparison, ValidationOutcome, ValidationReport

    report = ValidationReport(model=str(tmp_path / "model-int8.onnx"), reference=str(tmp_path / "run"),
                              precision="int8", backend="onnxruntime", tolerance=1.0,
                              domains=(DomainComparison("acdc-fog", 2, 40.0, 40.0 + delta, 99.5),))
    return ValidationOutcome(report, tmp_path / "validation.json")


@pytest.mark.parametrize("delta, code", [(-0.5, 0), (2.0, 1)])
def test_validate_exits_1_when_a_domain_drifts_past_the_tolerance(delta, code, monkeypatch, tmp_path):
    record(monkeypatch, "gkd_deploy.evaluation.validation.validate_export", returns=validation_outcome(tmp_path, delta))
    result = runner.invoke(app, ["validate", str(tmp_path / "model-int8.onnx"), "--targets", "acdc=/data/acdc"])
    assert result.exit_code == code, result.output
    assert ("validation passed" in result.output) == (code == 0)
    assert ("validation failed" in result.output) == (code == 1)
    if code == 0:
        assert f"gkd eval {tmp_path / 'run'} --targets acdc=/data/acdc" in result.output.replace("\n", "")


def test_validate_without_targets_suggests_an_eval_that_runs(monkeypatch, tmp_path):
    record(monkeypatch, "gkd_deploy.evaluation.validation.validate_export", returns=validation_outcome(tmp_path, 0.0))
    result = invoke(["validate", str(tmp_path / "model-int8.onnx")], stops=False)
    assert "--targets None" not in result.output


# --- gkd export -----------------------------------------------------------------------------------

def test_export_passes_every_option_as_settings(monkeypatch, tmp_path):
    from gkd_deploy.exporters.pipeline import ExportSettings
    from gkd_deploy.exporters.tensorrt import EngineOptions

    calls = record(monkeypatch, "gkd_deploy.exporters.pipeline.export_model")
    invoke(["export", str(tmp_path / "run"), "--format", "onnx,trt", "--precision", "fp32,fp16,int8",
            "--calib", "cityscapes=/data/cs", "--calib-count", "300", "--calib-method", "entropy",
            "--target", "onnxruntime", "--remainder", "fp16", "--quantize-sensitive", "--size", "96x64",
            "--opset", "18", "--out", str(tmp_path / "files"), "--workspace", "2.5", "--opt-level", "5",
            "--timing-cache", "trt.cache", "--batch", "2,4,16", "--outputs", "labels"])
    (model, settings), kwargs = calls.only
    assert model == tmp_path / "run" and isinstance(model, Path)
    assert kwargs == {"out_dir": tmp_path / "files"} and isinstance(kwargs["out_dir"], Path)
    assert settings.input_size == (64, 96)  # WIDTHxHEIGHT on the command line, (height, width) in the library
    assert settings.precisions == ("fp32", "fp16", "int8") and settings.formats == ("onnx", "trt")
    assert settings.calib == ("cityscapes=/data/cs",)
    assert settings.engine == EngineOptions(workspace_gib=2.5, optimization_level=5, timing_cache="trt.cache",
                                            min_batch=2, opt_batch=4, max_batch=16)
    assert settings == ExportSettings(
        precisions=("fp32", "fp16", "int8"), formats=("onnx", "trt"), input_size=(64, 96), opset=18,
        calib=("cityscapes=/data/cs",), calib_count=300, calib_method="entropy", target="onnxruntime",
        remainder="fp16", quantize_sensitive=True, outputs="labels", engine=settings.engine)


def test_export_defaults_leave_the_choices_to_the_library(monkeypatch, tmp_path):
    from gkd_deploy.exporters.pipeline import ExportSettings

    calls = record(monkeypatch, "gkd_deploy.exporters.pipeline.export_model")
    invoke(["export", str(tmp_path / "run")])
    (_, settings), kwargs = calls.only
    assert kwargs == {"out_dir": None}
    assert settings == ExportSettings() and settings.input_size is None and settings.calib == ()


# --- gkd infer ------------------------------------------------------------------------------------

def test_infer_passes_every_option_as_settings(monkeypatch, tmp_path):
    from gkd_deploy.cli.infer import print_start, track_frames
    from gkd_deploy.infer import InferSettings

    calls = record(monkeypatch, "gkd_deploy.infer.runner.infer")
    invoke(["infer", "clips/drive.mp4", "--model", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "seg.mp4"),
            "--masks", str(tmp_path / "masks"), "--labels", str(tmp_path / "labels"), "--side-by-side",
            "--alpha", "0.25", "--no-legend", "--show", "--mode", "slide", "--size", "96x64", "--batch", "4",
            "--max-frames", "10", "--fps", "12.5", "--device", "cpu", "--json", str(tmp_path / "infer.json"),
            "--score-threshold", "0.3"])
    (source, model, settings), kwargs = calls.only
    assert source == "clips/drive.mp4" and isinstance(source, str)  # a camera index or URL stays text
    assert model == tmp_path / "model.onnx" and isinstance(model, Path)
    assert settings == InferSettings(out=tmp_path / "seg.mp4", masks=tmp_path / "masks", labels=tmp_path / "labels",
                                     side_by_side=True, alpha=0.25, legend=False, show=True, mode="slide",
                                     size=(64, 96), batch=4, max_frames=10, fps=12.5, device="cpu",
                                     json_path=tmp_path / "infer.json", score_threshold=0.3)
    assert all(isinstance(path, Path) for path in (settings.out, settings.masks, settings.labels, settings.json_path))
    assert kwargs == {"track": track_frames, "started": print_start}


# --- gkd benchmark --------------------------------------------------------------------------------

def test_benchmark_passes_every_option(monkeypatch, tmp_path):
    calls = record(monkeypatch, "gkd_deploy.benchmark.runner.run_benchmark")
    first, second, run = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "run"
    invoke(["benchmark", "-m", f"{first},{second}", "--model", str(run), "--backends", "torch,onnxruntime-cuda",
            "--precision", "fp16,int8", "--batch", "1,8", "--size", "96x64,128x64", "--device", "cpu",
            "--warmup", "2", "--min-runs", "5", "--min-time", "0.5", "--data", "cityscapes=/data/cs",
            "--split", "train", "--peak-tflops", "1.5", "--workers", "2", "--json", str(tmp_path / "r.json"),
            "--csv", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "r.png")])
    (models,), kwargs = calls.only
    assert models == [str(first), str(second), str(run)]  # repeated and comma-separated, in order
    assert kwargs == {"backends": ["torch", "onnxruntime-cuda"], "precisions": ["fp16", "int8"],
                      "batch_sizes": [1, 8], "input_sizes": [(64, 96), (64, 128)], "device": "cpu", "warmup": 2,
                      "min_runs": 5, "min_seconds": 0.5, "data": "cityscapes=/data/cs", "split": "train",
                      "peak_tflops": 1.5, "num_workers": 2, "track": track}
    assert all(isinstance(size, int) for size in kwargs["batch_sizes"])


def test_benchmark_defaults(monkeypatch, tmp_path):
    calls = record(monkeypatch, "gkd_deploy.benchmark.runner.run_benchmark")
    invoke(["benchmark", "-m", str(tmp_path / "model.onnx")])
    (models,), kwargs = calls.only
    assert models == [str(tmp_path / "model.onnx")]
    assert kwargs["backends"] == ["torch", "onnxruntime"] and kwargs["precisions"] == ["fp32"]
    assert kwargs["batch_sizes"] == [1] and kwargs["input_sizes"] is None and kwargs["data"] is None


# --- gkd demo -------------------------------------------------------------------------------------

def test_demo_passes_its_settings_and_the_printers_hooks(monkeypatch, tmp_path):
    from gkd_deploy.cli.demo import DemoPrinter
    from gkd_deploy.demo import DemoHooks, DemoSettings

    # cli.demo imports run_demo when it loads (the command needs no lazy import): patched there.
    calls = record(monkeypatch, "gkd_deploy.cli.demo.run_demo")
    invoke(["demo", "--out", str(tmp_path / "demo"), "--train", "5", "--target", "3", "--proxy", "7",
            "--distill-steps", "2", "--task-steps", "4"])
    (out, settings, hooks), kwargs = calls.only
    assert kwargs == {}
    assert out == tmp_path / "demo" and isinstance(out, Path)
    assert settings == DemoSettings(train=5, target=3, proxy=7, distill_steps=2, task_steps=4)
    assert isinstance(hooks, DemoHooks)
    printer = hooks.step_done.__self__
    assert isinstance(printer, DemoPrinter) and hooks.step_done.__func__ is DemoPrinter.step_done
    assert hooks.track.__func__ is DemoPrinter.track and hooks.track.__self__ is printer
    assert hooks.callbacks is printer.training and isinstance(printer.training, TrainingDisplay)


def test_the_demo_shows_the_clips_frames_as_gkd_infer_does(monkeypatch):
    """The demo's one `track`: the plain bar, but the frame-rate bar of `gkd infer` between the
    clip's "segmenting" (its model, source and notes printed) and "segmented" steps."""
    from types import SimpleNamespace

    from gkd_deploy.cli import demo
    from gkd_deploy.infer import InferResult, InferStart, InferStats

    shown = []
    monkeypatch.setattr(demo, "track", lambda items, description, total: shown.append(("plain", description)) or items)
    monkeypatch.setattr(demo, "track_frames",
                        lambda items, description, total: shown.append(("frames", description, total)) or items)
    printed = []
    monkeypatch.setattr(demo, "print_start", printed.append)
    monkeypatch.setattr(demo, "print_summary", printed.append)
    printer = demo.DemoPrinter()
    start = InferStart(model=SimpleNamespace(), source="clip.mp4", kind="video", fps=10.0, frames=2, notes=("n",))
    clip = InferResult(stats=InferStats(source="clip.mp4", kind="video", expected=2), model=start.model, warnings=())
    assert list(printer.track([1, 2], "validating", 2)) == [1, 2]
    printer.step_done("segmenting", start)
    assert list(printer.track(["a", "b"], "segmenting", 2)) == ["a", "b"]
    printer.step_done("segmented", clip)
    assert list(printer.track([3], "benchmarking", 1)) == [3]
    assert shown == [("plain", "validating"), ("frames", "segmenting", 2), ("plain", "benchmarking")]
    assert printed == [start, clip]


# --- gkd compare ----------------------------------------------------------------------------------

COMPARE_CONFIG = "stage3: {steps: 21}\ncompare:\n  method_options: {cwd: {tau: 2.0}}\n  seeds: 9\n"


def test_compare_passes_the_base_config_and_settings(monkeypatch, tmp_path):
    from gkd_deploy.compare import CompareSettings

    calls = record(monkeypatch, "gkd_deploy.compare.run_compare")
    config_file = tmp_path / "compare.yaml"
    config_file.write_text(COMPARE_CONFIG)
    invoke(["compare", "--methods", "gkd, cwd", "--out", str(tmp_path / "table"), "--seeds", "1,2",
            "--teacher", "tiny-teacher", "--student", "tiny-student", "--proxy", "images=/data/proxy",
            "--source", "cityscapes=/data/cs", "--targets", "acdc=/data/acdc", "--config", str(config_file),
            "--preset", "paper", "--no-pretrained", "--teacher-weights", "t.safetensors",
            "--student-weights", "s.safetensors", "--decoder", "linear", "--device", "cpu", "--workers", "1"])
    (base, settings, out), kwargs = calls.only
    assert out == tmp_path / "table" and isinstance(out, Path)
    assert settings == CompareSettings(methods=("gkd", "cwd"), seeds=(1, 2), method_options={"cwd": {"tau": 2.0}})
    assert kwargs["track"] is track and kwargs["make_callbacks"] is TrainingDisplay and callable(kwargs["on_run"])
    assert (base.teacher, base.student, base.pretrained) == ("tiny-teacher", "tiny-student", False)
    assert (base.teacher_weights, base.student_weights) == ("t.safetensors", "s.safetensors")
    assert base.proxy == ("images=/data/proxy",) and base.source == ("cityscapes=/data/cs",)
    assert base.targets == ("acdc=/data/acdc",)
    assert base.stage3.decoder == "linear" and base.device == "cpu" and base.workers == 1
    assert base.stages == (3,)  # each method says which stages it runs
    assert base.stage1.epochs == 100 and base.stage3.steps == 21  # the preset under the file


def compare_settings_from_file(monkeypatch, tmp_path, section: str):
    """The CompareSettings `gkd compare` passes for a config file with this `compare:` section."""
    calls = record(monkeypatch, "gkd_deploy.compare.run_compare")
    config_file = tmp_path / "compare.yaml"
    config_file.write_text(f"source: cityscapes=/data/cs\ncompare: {section}\n")
    invoke(["compare", "--out", str(tmp_path / "table"), "--config", str(config_file)])
    (_, settings, _), _ = calls.only
    return settings


def test_compare_takes_methods_and_seeds_from_the_config_file(monkeypatch, tmp_path):
    settings = compare_settings_from_file(monkeypatch, tmp_path, "{methods: [source-only, gkd], seeds: '3,4'}")
    assert settings.methods == ("source-only", "gkd") and settings.seeds == (3, 4) and settings.method_options == {}


def test_compare_strips_the_methods_text_of_the_config_file(monkeypatch, tmp_path):
    settings = compare_settings_from_file(monkeypatch, tmp_path, "{methods: 'source-only, gkd'}")
    assert settings.methods == ("source-only", "gkd")  # as --methods 'source-only, gkd' gives


# --- gkd models -----------------------------------------------------------------------------------

def test_models_passes_the_role_and_prints_the_table(monkeypatch):
    # cli.models imports list_model_specs when it loads: patched there.
    calls = record(monkeypatch, "gkd_deploy.cli.models.list_model_specs", returns=[])
    result = invoke(["models", "--role", "teacher"], stops=False)
    assert calls.made == [(("teacher",), {})]
    assert "gkd model zoo" in result.stdout


def test_models_import_passes_every_option(monkeypatch, tmp_path):
    written = tmp_path / "segmenter.safetensors"
    calls = record(monkeypatch, "gkd_deploy.models.authors_mask2former.import_authors_checkpoint", returns=written)
    result = invoke(["models", "import", str(tmp_path / "authors.pth"), "--out", str(written), "--student", "vit-s",
                     "--classes", "isprs", "--num-heads", "6", "--num-points", "2"], stops=False)
    (checkpoint, out), kwargs = calls.only
    assert checkpoint == tmp_path / "authors.pth" and isinstance(checkpoint, Path)
    assert out == written and isinstance(out, Path)
    assert kwargs == {"student": "vit-s", "classes": "isprs", "num_heads": 6, "num_points": 2}
    assert f"segmenter: {written}" in result.stdout.replace("\n", "")


def test_models_import_defaults_to_the_authors_heads_and_points(monkeypatch, tmp_path):
    from gkd_deploy.models.authors_mask2former import AUTHORS_HEADS, AUTHORS_POINTS

    calls = record(monkeypatch, "gkd_deploy.models.authors_mask2former.import_authors_checkpoint",
                   returns=tmp_path / "out.safetensors")
    invoke(["models", "import", str(tmp_path / "authors.pth"), "--out", str(tmp_path / "out.safetensors")],
           stops=False)
    _, kwargs = calls.only
    assert kwargs == {"student": None, "classes": None, "num_heads": AUTHORS_HEADS, "num_points": AUTHORS_POINTS}


# --- gkd data synthetic ---------------------------------------------------------------------------

def test_data_synthetic_passes_every_option_and_prints_the_summary(monkeypatch, tmp_path):
    from gkd_deploy.data.synthetic import SyntheticSummary

    summary = SyntheticSummary(cityscapes=tmp_path / "cityscapes-synth", acdc=tmp_path / "acdc-synth",
                               video=tmp_path / "synth-night.mp4", train=3, val=2, target=1,
                               conditions=("fog", "night", "rain", "snow"), size=(96, 64), seconds=0.1,
                               proxy=tmp_path / "proxy-synth", proxy_images=4)
    calls = record(monkeypatch, "gkd_deploy.data.synthetic.write_synthetic", returns=summary)
    result = invoke(["data", "synthetic", str(tmp_path), "--train", "3", "--val", "2", "--target", "1",
                     "--size", "96x64", "--seed", "5", "--video", "--video-style", "night", "--proxy", "4",
                     "--workers", "2"], stops=False)
    (out,), kwargs = calls.only
    assert out == tmp_path and isinstance(out, Path)
    # WIDTHxHEIGHT stays (width, height) here: the writer takes image sizes as OpenCV does.
    assert kwargs == {"train": 3, "val": 2, "target": 1, "size": (96, 64), "seed": 5, "video": True,
                      "video_style": "night", "proxy": 4, "workers": 2, "track": track}
    printed = result.stdout.replace("\n", "")
    for path in (summary.cityscapes, summary.acdc, summary.proxy, summary.video):
        assert str(path) in printed
