"""`gkd compare`: recipes, the table, resumable runs, bad input."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys

import pytest
import yaml
from typer.testing import CliRunner

from gkd_deploy.cli.app import app, main
from gkd_deploy.compare import CompareReport, CompareSettings, RunScore, plan_compare, run_compare
from gkd_deploy.compare import runner as compare_runner
from gkd_deploy.compare.plot import HEIGHT, WIDTH, write_compare_plot
from gkd_deploy.compare.runner import load_base_config, parse_seeds
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.training.recipes import RECIPES, apply_recipe

SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from gkd_deploy.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic"), train=8, val=2, target=2, size=(128, 64), seed=5,
                           workers=1)


def base_settings(synthetic) -> dict:
    distill = {"steps": 3, "batch_size": 4, "img_size": 64, "patch_size": 16, "base_lr": 0.5, "ema": False}
    return {
        "teacher": "tiny-teacher", "student": "tiny-student", "pretrained": False,
        "proxy": f"images={synthetic.cityscapes / 'leftImg8bit' / 'train'}",
        "source": f"cityscapes={synthetic.cityscapes}", "targets": f"acdc={synthetic.acdc}",
        "stage1": distill, "stage2": distill,
        "stage3": {"steps": 3, "batch_size": 4, "crop_size": 64, "short_side": 64, "lr": 1e-3, "decoder": "semfpn",
                   "decoder_options": SMALL_FPN},
        "workers": 0, "checkpoint_every": 3, "log_every": 1,
    }


def base_config(synthetic, **changes):
    config, _ = load_base_config(None, {**base_settings(synthetic), **changes}, None)
    return config


def test_recipes_set_what_defines_each_method_and_nothing_else(synthetic):
    config = base_config(synthetic)
    assert config.stages == (3,)  # the base's stages are each method's to say
    gkd = apply_recipe(config, "gkd")
    assert gkd.stages == (1, 2, 3) and gkd.stage1.method == gkd.stage2.method == "qsd"
    assert gkd.stage3.encoder_lr == 0.0 and gkd.stage3.distill_method is None
    one_stage = apply_recipe(config, "one-stage-kd")
    assert one_stage.stages == (3,) and one_stage.stage3.distill_method == "fitnets"
    assert one_stage.stage3.encoder_lr == pytest.approx(1e-4)  # 1/10 of the decoder's rate, as the paper
    assert apply_recipe(config, "teacher").stage3.encoder == "teacher"
    assert apply_recipe(base_config(synthetic, proxy=()), "cwd").stages == (2, 3)  # no proxy: no stage 1
    g2sd = apply_recipe(config, "g2sd", teacher_run="runs/teacher")
    assert g2sd.stage3.logit_teacher == "runs/teacher" and g2sd.stage3.encoder_lr > 0
    # Budget, data and seed are the base's for every method.
    for name in RECIPES:
        recipe = apply_recipe(config, name, teacher_run="t")
        assert (recipe.stage2.steps, recipe.stage3.steps, recipe.source, recipe.seed) == (3, 3, config.source, 0)


def test_compare_runs_every_method_and_writes_the_table(synthetic, tmp_path):
    base = base_config(synthetic)
    settings = CompareSettings(methods=("source-only", "one-stage-kd", "fitnets", "cwd", "gkd"), seeds=(0, 1))
    seen = []
    report = run_compare(base, settings, tmp_path / "cmp", on_run=lambda run, i, n, status: seen.append(status))
    assert seen == ["run"] * 10
    assert report.methods == settings.methods
    assert report.domains == ("acdc-fog", "acdc-night", "acdc-rain", "acdc-snow")
    for method in report.methods:
        assert sorted(s.seed for s in report.runs(method)) == [0, 1]
        for domain in report.domains:
            cell = report.cell(method, domain)
            assert cell.count == 2 and 0 <= cell.mean <= 100 and cell.std >= 0
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [row["method"] for row in saved["table"]] == list(settings.methods)
    assert set(saved["table"][0]) >= {"acdc-fog", "acdc-snow", "average"}
    csv_lines = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 5 and csv_lines[0].startswith("method,seeds,acdc-fog_mean,acdc-fog_std")
    assert (tmp_path / "cmp" / "compare.png").is_file() == HAS_MATPLOTLIB  # the plot is optional (extra `plots`)
    # Each run is an ordinary run folder with its recipe's config.
    gkd_run = tmp_path / "cmp" / "gkd" / "seed-1"
    assert yaml.safe_load((gkd_run / "config.yaml").read_text())["seed"] == 1
    assert (gkd_run / "checkpoints" / "stage1-student.safetensors").is_file()
    assert not (tmp_path / "cmp" / "source-only" / "seed-0" / "checkpoints" / "stage2-student.safetensors").exists()
    # A finished comparison is not run again; the table is the same.
    seen.clear()
    again = run_compare(base, settings, tmp_path / "cmp", on_run=lambda run, i, n, status: seen.append(status))
    assert seen == ["done"] * 10 and again.to_dict()["table"] == report.to_dict()["table"]
    # Other settings in the same folder are refused before anything runs.
    with pytest.raises(ConfigError, match="holds a source-only run with other settings"):
        plan_compare(base_config(synthetic, stage3={**base_settings(synthetic)["stage3"], "steps": 4}), settings,
                     tmp_path / "cmp")


def test_an_interrupted_comparison_resumes(synthetic, tmp_path):
    base = base_config(synthetic)
    settings = CompareSettings(methods=("gkd",), seeds=(0,))

    class Stop(Exception):
        pass

    class StopInStage3:
        def stage_started(self, *args):
            pass

        def step_finished(self, stage, step, metrics):
            if stage == 3 and step == 2:
                raise Stop

        def stage_finished(self, *args):
            pass

    with pytest.raises(Stop):
        run_compare(base, settings, tmp_path / "cmp", make_callbacks=StopInStage3)
    seen = []
    report = run_compare(base, settings, tmp_path / "cmp", on_run=lambda run, i, n, status: seen.append(status))
    assert seen == ["resume"] and report.cell("gkd", "acdc-fog").count == 1


def small_report() -> CompareReport:
    return CompareReport(
        methods=("teacher", "a", "b"), domains=("x", "y"),
        scores=(RunScore("teacher", 0, "", {"x": 40.0, "y": 60.0}), RunScore("a", 0, "", {"x": 30.0, "y": 50.0}),
                RunScore("a", 1, "", {"x": 34.0, "y": 50.0}), RunScore("b", 0, "", {"x": 10.0, "y": math.nan})))


def test_teacher_share_and_best_row():
    report = small_report()
    assert report.cell("a", "x").mean == 32.0 and report.cell("a", "x").std == pytest.approx(2 ** 0.5 * 2)
    assert report.cell("a", "average").mean == pytest.approx(41.0)  # mean over seeds of (40, 42)
    assert report.share_of_teacher("a") == pytest.approx(41.0 / 50.0)
    assert report.best() == "a"
    assert report.cell("b", "average").mean == 10.0 and report.cell("b", "x").text() == "10.0"


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="plots need matplotlib (pip install '.[plots]')")
def test_the_plot_has_a_bar_per_scored_cell(tmp_path):
    import cv2
    import numpy as np
    from matplotlib.colors import to_rgb

    image = cv2.imread(str(write_compare_plot(small_report(), tmp_path / "compare.png")))
    assert image.shape == (HEIGHT, WIDTH, 3)
    # Methods take the default colours in table order (C0, C1, C2); b has one bar of 10 of the 60 drawn.
    counts = [int((image == np.array([round(255 * c) for c in reversed(to_rgb(f"C{index}"))], np.uint8))
                   .all(axis=2).sum()) for index in range(3)]
    assert counts[0] > counts[1] > counts[2] > 1000


def test_without_matplotlib_the_table_is_written_and_the_plot_skipped(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with caplog.at_level(logging.WARNING, logger="gkd_deploy.plotting"):
        compare_runner._write(small_report(), tmp_path, plot=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["compare.csv", "compare.json"]
    assert "pip install 'gkd-deploy[plots]'" in caplog.text and "compare.png skipped" in caplog.text


def test_bad_input_gets_one_clear_line(synthetic, tmp_path):
    base = base_config(synthetic)
    with pytest.raises(ConfigError, match="unknown method 'gdk'. Did you mean 'gkd'"):
        plan_compare(base, CompareSettings(methods=("gdk",)), tmp_path)
    with pytest.raises(ConfigError, match="seeds must be whole numbers"):
        parse_seeds("0,one")
    with pytest.raises(ConfigError, match="give each seed once"):
        parse_seeds("1,1")
    no_teacher = base_config(synthetic, teacher=None)
    with pytest.raises(ConfigError, match="gkd, cwd need a teacher"):
        plan_compare(no_teacher, CompareSettings(methods=("source-only", "gkd", "cwd")), tmp_path)
    plan_compare(no_teacher, CompareSettings(methods=("source-only",)), tmp_path)  # needs none
    unlabelled = base_config(synthetic, source=f"images={synthetic.cityscapes / 'leftImg8bit' / 'train'}")
    with pytest.raises(DataError, match="needs labels"):
        plan_compare(unlabelled, CompareSettings(methods=("gkd",)), tmp_path)
    with pytest.raises(ConfigError, match="give --targets"):
        plan_compare(base_config(synthetic, targets=()), CompareSettings(methods=("gkd",)), tmp_path)
    # G2SD's specific distillation needs the teacher reference, which comes first.
    planned = plan_compare(base, CompareSettings(methods=("gkd", "g2sd")), tmp_path)
    assert [run.method for run in planned] == ["teacher", "gkd", "g2sd"]
    assert planned[2].config.stage3.logit_teacher == str(tmp_path / "teacher" / "seed-0")


def test_the_command_reads_a_compare_section_and_reports_errors(synthetic, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    config = tmp_path / "compare.yaml"
    config.write_text(yaml.safe_dump({**base_settings(synthetic), "compare": {
        "methods": ["source-only", "afdcd"], "seeds": [3], "method_options": {"afdcd": {"pool": 1, "patch": 2,
                                                                                       "groups": 4}}}}))
    result = CliRunner().invoke(app, ["compare", "--config", str(config), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.stdout
    assert "source-only" in result.stdout and "afdcd" in result.stdout and "acdc-fog" in result.stdout
    stage2 = yaml.safe_load((tmp_path / "cmp" / "afdcd" / "seed-3" / "config.yaml").read_text())["stage2"]
    assert stage2["method"] == "afdcd" and stage2["method_options"] == {"pool": 1, "patch": 2, "groups": 4}
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--config", str(config), "--out", str(tmp_path / "other"), "--seeds", "0,x"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "seeds must be whole numbers" in err and "Traceback" not in err
