"""Command tests: what each command passed to the library, and how errors reach the user."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import gkd_deploy
from gkd_deploy.cli import app as app_module
from gkd_deploy.cli.app import app, main

runner = CliRunner()


def test_version_and_help_on_every_command():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and gkd_deploy.__version__ in result.stdout
    for command in (["models"], ["train"], ["compare"], ["eval"], ["export"], ["validate"], ["infer"], ["benchmark"], ["demo"], ["data"], ["data", "synthetic"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.stdout)
        assert "Usage" in result.stdout


def test_models_lists_the_zoo(monkeypatch):
    from gkd_deploy.cli.console import console

    monkeypatch.setattr(console, "width", 200)
    result = runner.invoke(app, ["models", "--role", "student"])
    assert result.exit_code == 0
    assert "vit-s" in result.stdout and "deit_small_patch16_224" in result.stdout and "21.7" in result.stdout
    assert "dinov2-g" not in result.stdout


def test_library_error_is_one_red_line_and_exit_1(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "nope")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "error:" in err and "nope not found" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GKD_DEBUG", "1")
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "nope")])
    assert "Traceback" in capsys.readouterr().err


def test_eval_passes_its_options_to_the_library(monkeypatch, tmp_path):
    calls = {}

    def fake_evaluate_model(source, targets, settings, **kwargs):
        calls.update(source=source, targets=targets, settings=settings)
        raise app_module.GKDError("stop here")

    monkeypatch.setattr("gkd_deploy.evaluation.runner.evaluate_model", fake_evaluate_model)
    result = runner.invoke(app, ["eval", str(tmp_path), "--targets", "cityscapes=/a,acdc=/b", "--mode", "whole",
                                 "--crop", "256", "--split", "train", "--workers", "0"])
    assert result.exit_code != 0
    assert calls["source"] == tmp_path and calls["targets"] == "cityscapes=/a,acdc=/b"
    settings = calls["settings"]
    assert settings.mode == "whole" and settings.crop == 256 and settings.split == "train" and settings.workers == 0


def test_gkd_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "gkd_deploy.cli.app", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and gkd_deploy.__version__ in result.stdout


def test_the_entry_point_answers_version_without_building_the_command_line():
    probe = ("import sys; from gkd_deploy.cli import main; main(['--version']); "
             "print(sorted(m for m in ('typer', 'rich', 'yaml', 'gkd_deploy.cli.app') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"gkd-deploy {gkd_deploy.__version__}", "[]"]
    # Anything else is the full command line, the same as `gkd_deploy.cli.app.main`.
    probe = "from gkd_deploy.cli import main; main(['models', '--role', 'teacher'])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and "effnet-lite0" in result.stdout


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-data")
    result = runner.invoke(app, ["data", "synthetic", str(out), "--train", "4", "--val", "3", "--target", "2",
                                 "--size", "128x64", "--workers", "1"])
    assert result.exit_code == 0, result.stdout
    return out


def test_data_synthetic_writes_both_layouts(synthetic_data):
    images = sorted((synthetic_data / "cityscapes-synth" / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))
    labels = sorted((synthetic_data / "cityscapes-synth" / "gtFine" / "val").rglob("*_gtFine_labelTrainIds.png"))
    assert len(images) == len(labels) == 3
    for condition in ("fog", "night", "rain", "snow"):
        assert len(list((synthetic_data / "acdc-synth" / "rgb_anon" / condition / "val").rglob("*_rgb_anon.png"))) == 2


def test_eval_scores_a_checkpoint_on_every_domain(synthetic_data, tmp_path):
    import json

    from gkd_deploy.models.checkpoint import save_segmenter
    from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

    checkpoint = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64)),
                                tmp_path / "model.safetensors")
    targets = f"cityscapes={synthetic_data / 'cityscapes-synth'},acdc={synthetic_data / 'acdc-synth'}"
    result = runner.invoke(app, ["eval", str(checkpoint), "--targets", targets, "--workers", "0", "--per-class"])
    assert result.exit_code == 0, result.stdout
    report = json.loads((tmp_path / "model.safetensors.eval.json").read_text())
    assert [d["domain"] for d in report["domains"]] == ["cityscapes", "acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]
    assert [d["num_images"] for d in report["domains"]] == [3, 2, 2, 2, 2]
    assert all(0 <= d["miou"] <= 100 for d in report["domains"])
    assert report["mode"]["crop"] == 64 and report["mode"]["stride"] == 42


def test_eval_refuses_a_data_set_of_another_class_set(synthetic_data, tmp_path):
    from gkd_deploy.data.classes import ISPRS
    from gkd_deploy.models.checkpoint import save_segmenter
    from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

    checkpoint = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64, class_set=ISPRS)),
                                tmp_path / "isprs.safetensors")
    result = runner.invoke(app, ["eval", str(checkpoint), "--targets", f"acdc={synthetic_data / 'acdc-synth'}"])
    assert result.exit_code != 0
    assert "19 cityscapes classes" in str(result.exception)


def test_train_passes_options_and_config_file_to_the_library(monkeypatch, tmp_path):
    captured = {}

    def fake_train(config, run_path, **kwargs):
        captured.update(config=config, run_path=run_path, **kwargs)
        raise app_module.GKDError("stop here")

    monkeypatch.setattr("gkd_deploy.training.trainer.train", fake_train)
    config_file = tmp_path / "run.yaml"
    config_file.write_text("teacher: dinov2-l\nstudent: vit-b\nsource: gtav=/data/gta\nstages: [2, 3]\n"
                           "stage3: {steps: 123, decoder: linear}\n")
    result = runner.invoke(app, ["train", "--config", str(config_file), "--student", "vit-s", "--out", str(tmp_path / "run"),
                                 "--label-fraction", "1/8", "--no-pretrained", "--targets", "cityscapes=/a,acdc=/b"])
    assert "stop here" in str(result.exception)
    config = captured["config"]
    assert config.teacher == "dinov2-l" and config.student == "vit-s"  # the option overrides the file
    assert config.stages == (2, 3) and config.source == ("gtav=/data/gta",)
    assert config.stage3.steps == 123 and config.stage3.decoder == "linear" and config.stage3.label_fraction == 0.125
    assert config.pretrained is False and config.targets == ("cityscapes=/a", "acdc=/b")
    assert captured["run_path"] == tmp_path / "run" and captured["resume"] is False


def test_train_needs_a_run_folder():
    result = runner.invoke(app, ["train", "--source", "gtav=/x", "--stages", "2,3"])
    assert result.exit_code == 2 and "--out" in result.output


def test_demo_runs_the_whole_path_in_miniature(tmp_path):
    from gkd_deploy.demo import DemoHooks, DemoSettings, run_demo

    settings = DemoSettings(train=8, val=2, target=2, proxy=8, size=(128, 64), distill_steps=3, task_steps=3, crop=64,
                            workers=0, deploy=False)  # the deployment steps: test_gkd_demo_ends_with_...
    steps = []
    result = run_demo(tmp_path / "demo", settings, DemoHooks(step_done=lambda step, _: steps.append(step)))
    assert steps == ["trained"] and result.exported is None and result.benchmark is None
    domains = ["cityscapes", "acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]
    assert [d.domain for d in result.evaluation.report.domains] == domains
    for name in ("stage1-student.safetensors", "stage2-student.safetensors", "segmenter.safetensors"):
        assert (result.run.checkpoint_dir / name).is_file()
    # The real teacher (EfficientNet-Lite0, pip weights) distils the student; the same student from
    # scratch is the comparison, scored on the same domains.
    import yaml

    config = yaml.safe_load((result.run.path / "config.yaml").read_text())
    assert config["teacher"] == "effnet-lite0" and config["stages"] == [1, 2, 3] and config["stage3"]["encoder_lr"] == 0
    assert config["proxy"] == [f"images={result.data.proxy}"] and len(list((result.data.proxy / "images").iterdir())) == 8
    scratch = yaml.safe_load((result.baseline.path / "config.yaml").read_text())
    assert scratch["stages"] == [3] and scratch["stage3"]["encoder_lr"] > 0
    assert [d.domain for d in result.baseline_evaluation.report.domains] == domains
    assert result.data.video is not None and result.data.video.is_file()
    # `gkd eval RUN` scores a finished run on the targets in its config.
    evaluated = runner.invoke(app, ["eval", str(result.run.path), "--workers", "0"])
    assert evaluated.exit_code == 0, evaluated.stdout
    assert "acdc-snow" in evaluated.stdout
    # Safe to run twice: the demo rewrites its own folder.
    run_demo(tmp_path / "demo", settings)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(app_module.GKDError, match="not written by `gkd demo`"):
        run_demo(tmp_path / "other", settings)


def test_gkd_demo_ends_with_an_annotated_clip_and_a_benchmark_table(tmp_path, monkeypatch):
    import json

    import cv2

    from gkd_deploy.cli.console import console

    monkeypatch.setattr(console, "width", 200)

    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--train", "8", "--target", "2", "--proxy", "8",
                                 "--distill-steps", "2", "--task-steps", "3"])
    assert result.exit_code == 0, result.output
    assert "distilled from effnet-lite0" in result.output  # the title wraps with the table's width
    assert "from scratch" in result.output and "difference" in result.output and "targets (mean)" in result.output
    assert "validation failed" not in result.output
    clip = cv2.VideoCapture(str(out / "infer" / "synth-fog-seg.mp4"))
    frames = 0
    while clip.read()[0]:
        frames += 1
    assert frames == 48  # every frame of the synthetic clip, frame and overlay side by side
    assert (clip.get(cv2.CAP_PROP_FRAME_WIDTH), clip.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1024, 256)
    report = json.loads((out / "benchmark" / "benchmark.json").read_text())
    rows = {(row["backend"], row["precision"]): row for row in report["rows"]}
    for measured in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8")):
        assert rows[measured]["status"] == "ok" and rows[measured]["p50_ms"] > 0, measured
    assert rows[("torch", "int8")]["status"] == "skipped" and "Q/DQ" in rows[("torch", "int8")]["reason"]
    assert (out / "benchmark" / "benchmark.csv").is_file()


def test_training_display_without_a_terminal_prints_plain_lines(capsys):
    from gkd_deploy.cli.progress import TrainingDisplay

    display = TrainingDisplay()
    assert not display.live  # pytest captures the output: not a terminal
    display.stage_described(2, "qsd distillation of tiny-student (0.21M params) on [16] images")
    display.stage_started(2, "domain-agnostic distillation", 10, 0)
    display.step_finished(2, 5, {"loss": 1.25, "feature": 0.5, "lr": 1e-3, "images_per_s": 80.0})
    display.close()
    out = capsys.readouterr().out
    assert "stage 2: qsd distillation of tiny-student (0.21M params) on [16] images" in out
    line = next(line for line in out.splitlines() if "step 5/10" in line)
    assert line.startswith("stage 2 step 5/10 eta ") and "loss 1.2500 feature 0.5000 lr 1.00e-03 80.0 img/s" in line


def test_ctrl_c_in_training_prints_the_resume_command(monkeypatch, tmp_path):
    def interrupted(config, run_path, **kwargs):
        (run_path / "config.yaml").parent.mkdir(parents=True)
        (run_path / "config.yaml").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr("gkd_deploy.training.trainer.train", interrupted)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--teacher", "tiny-teacher", "--student", "tiny-student", "--stages", "3",
                                 "--source", f"cityscapes={tmp_path}", "--out", str(out)])
    assert result.exit_code == 130
    assert "interrupted after" in result.output and f"gkd train --resume {out}" in result.output


def test_verbose_is_accepted_after_the_subcommand(monkeypatch):
    import logging

    for argv in (["models", "--role", "student", "-v"], ["-v", "models", "--role", "student"]):
        logging.getLogger().setLevel(logging.WARNING)
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0 and logging.getLogger().level == logging.INFO, argv


def test_tables_fit_80_columns_and_keep_the_names_whole(synthetic_data, tmp_path, monkeypatch):
    from gkd_deploy.cli.console import console
    from gkd_deploy.models.checkpoint import save_segmenter
    from gkd_deploy.models.registry import list_model_specs
    from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

    monkeypatch.setattr(console, "width", 80)
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and max(len(line) for line in result.stdout.splitlines()) <= 80
    names = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 2}
    assert {spec.name for spec in list_model_specs()} <= names  # every name whole, on one line

    checkpoint = save_segmenter(build_segmenter(SegmenterConfig("tiny-student", img_size=64)),
                                tmp_path / "model.safetensors")
    targets = f"cityscapes={synthetic_data / 'cityscapes-synth'},acdc={synthetic_data / 'acdc-synth'}"
    result = runner.invoke(app, ["eval", str(checkpoint), "--targets", targets, "--workers", "0", "--per-class"])
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "class" in line and "acdc-fog" in line)
    assert all(domain in header for domain in ("cityscapes", "acdc-night", "acdc-rain", "acdc-snow"))
    rows = {line.split("│")[1].strip() for line in lines if line.count("│") > 2}
    assert {"road", "sidewalk", "bicycle", "mIoU"} <= rows  # one row per class


def test_torch_threads_follow_the_option_and_default_to_the_available_cores():
    import torch

    from gkd_deploy.training.config import available_cores

    before = torch.get_num_threads()
    try:
        assert runner.invoke(app, ["--threads", "1", "models", "--role", "student"]).exit_code == 0
        assert torch.get_num_threads() == 1
        assert runner.invoke(app, ["models", "--role", "student"]).exit_code == 0
        assert torch.get_num_threads() == available_cores()
        assert runner.invoke(app, ["--threads", "0", "models"]).exit_code == 2  # a usage error
    finally:
        torch.set_num_threads(before)
