"""Bad input at the command line: exit 1, one error line, no traceback, nothing written or changed.

Each case runs the real `gkd` entry point (`main`) the way a user types it."""

from pathlib import Path

import pytest
import torch

from gkd_deploy.cli.app import main
from tests.fixtures_data import make_cityscapes, make_source_and_targets


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_source_and_targets(tmp_path_factory.mktemp("data"))


def run_gkd(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--teacher", "tiny-teacher", "--student", "tiny-student", "--stages", "2,3",
            "--source", f"cityscapes={data / 'cityscapes'}", "--targets", f"acdc={data / 'acdc'}",
            "--out", str(out), *extra]


def garbage_weights(folder: Path) -> Path:
    path = folder / "teacher.safetensors"
    path.write_bytes(b"this is not a safetensors file")
    return path


CASES = {
    # name: (arguments after the common ones, expected message, replaces --teacher?)
    "unknown teacher": (["--teacher", "dinov9-b"], "unknown model 'dinov9-b'"),
    "a CNN as the student": (["--student", "effnet-lite0"], "CNN encoders serve as teachers only"),
    "garbage teacher weights": (["--teacher-weights", "{weights}"], "cannot read weights from"),
    "unknown device": (["--device", "tpu"], "unknown device 'tpu'"),
    "a missing target folder": (["--targets", "acdc=/nonexistent/acdc"], "targets: acdc=/nonexistent/acdc is not there"),
    "a missing source folder": (["--source", "cityscapes=/nonexistent/cs"],
                                "source: cityscapes=/nonexistent/cs is not there"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_that_cannot_start_writes_nothing(case, data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    extra, message = CASES[case]
    extra = [arg.replace("{weights}", str(garbage_weights(tmp_path))) for arg in extra]
    out = tmp_path / "run"
    code, err = run_gkd(train_args(data, out, *extra), capsys)
    assert code == 1 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # Validated before the first byte: no run folder, so the corrected command is not refused.
    assert not out.exists()


def test_an_instance_run_on_a_missing_coco_release_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    out = tmp_path / "run"
    code, err = run_gkd(["train", "--task", "instance", "--recipe", "supervised", "--source", "coco=/nonexistent/coco",
                         "--out", str(out)], capsys)
    assert code == 1 and "source: coco=/nonexistent/coco is not there" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_train_on_cuda_without_a_gpu_says_so_and_writes_nothing(data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    code, err = run_gkd(train_args(data, tmp_path / "run", "--device", "cuda"), capsys)
    assert code == 1 and "torch sees no CUDA GPU" in err and "--device cpu" in err
    assert not (tmp_path / "run").exists()


def test_train_out_naming_a_file_leaves_the_file_alone(data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = run_gkd(train_args(data, target), capsys)
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "mine"


def test_messages_print_as_written_not_as_markup(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    folder = tmp_path / "runs[v2]"
    code, err = run_gkd(["eval", str(folder / "exp1")], capsys)
    assert code == 1 and f"{folder / 'exp1'} not found" in err  # the brackets survive
    before = snapshot(tmp_path)
    assert before == {}


def test_next_step_hints_print_brackets_and_do_not_wrap(monkeypatch, capsys):
    from gkd_deploy.cli.console import console, next_step

    monkeypatch.setattr(console, "width", 40)
    command = "pip install 'gkd-deploy[tensorrt]' && gkd export runs/a-rather-long-run-name --precision fp16"
    next_step(command)
    out = capsys.readouterr().out
    assert out.strip() == f"next: {command}"


@pytest.mark.parametrize("option", [["--task-steps", "0"], ["--train", "-3"], ["--distill-steps", "0"]])
def test_demo_with_a_bad_option_keeps_the_previous_demo(option, tmp_path, capsys, monkeypatch):
    from gkd_deploy.demo import MARKER

    monkeypatch.delenv("GKD_DEBUG", raising=False)
    out = tmp_path / "demo-out"
    (out / "run").mkdir(parents=True)
    (out / MARKER).write_text("written by gkd demo")
    (out / "run" / "eval.json").write_text("{}")
    before = snapshot(out)
    code, err = run_gkd(["demo", "--out", str(out), *option], capsys)
    assert code == 1 and "must be at least 1" in err and "Traceback" not in err
    assert snapshot(out) == before


class _BadItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        from gkd_deploy.errors import DataError

        raise DataError(f"acdc-fog: label frame{index}.png holds unexpected values [200]; expected train ids 0-18")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_data_error_in_a_loader_worker_keeps_its_one_line_message(workers):
    from gkd_deploy.errors import DataError

    loader = torch.utils.data.DataLoader(_BadItems(), batch_size=2, num_workers=workers)
    with pytest.raises(DataError) as error:
        next(iter(loader))
    assert str(error.value) == "acdc-fog: label frame0.png holds unexpected values [200]; expected train ids 0-18"


def test_train_with_workers_reports_a_bad_label_in_one_line(data, tmp_path, capsys, monkeypatch):
    import numpy as np

    from tests.fixtures_data import write_gray

    monkeypatch.delenv("GKD_DEBUG", raising=False)
    source = tmp_path / "bad-cityscapes"
    make_cityscapes(source, split="train")
    label = sorted(source.rglob("*_gtFine_labelTrainIds.png"))[0]
    write_gray(label, np.full((32, 64), 77, dtype=np.uint8))  # not a Cityscapes train id
    config = tmp_path / "train.yaml"
    config.write_text(f"student: tiny-student\nstages: [3]\nsource: cityscapes={source}\nworkers: 2\n"
                      "stage3: {steps: 2, batch_size: 2, crop_size: 32, short_side: 32, decoder: linear}\n")
    args = ["train", "--config", str(config), "--recipe", "source-only", "--no-pretrained",
            "--out", str(tmp_path / "run")]
    code, err = run_gkd(args, capsys)
    assert code == 1 and "holds unexpected values [77]" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_bad_command_options_are_refused_before_anything_runs(tmp_path):
    from gkd_deploy.errors import ConfigError, GKDError
    from gkd_deploy.cli.export import parse_batch_range
    from gkd_deploy.evaluation.inference import default_inference_mode
    from gkd_deploy.evaluation.settings import EvalSettings, ValidateSettings
    from gkd_deploy.evaluation.validation import validate_export
    from gkd_deploy.exporters.pipeline import export_model
    from gkd_deploy.exporters.tensorrt import EngineOptions
    from gkd_deploy.infer import InferSettings

    with pytest.raises(ConfigError, match="MIN,OPT,MAX"):
        parse_batch_range("1,8")
    assert parse_batch_range("1, 4 ,8") == (1, 4, 8)
    with pytest.raises(ConfigError, match="1 <= MIN <= OPT <= MAX"):
        EngineOptions(min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(ConfigError, match="stride"):
        default_inference_mode(128, 16, stride=0)  # refused, not replaced by the default
    assert default_inference_mode(128, 16).stride == 85
    with pytest.raises(ConfigError, match="--fps must be a positive"):
        InferSettings(fps=-5)
    missing = tmp_path / "no-such-run"
    # Option errors come first: the missing run is not even looked at, nothing is written.
    with pytest.raises(ConfigError, match="unknown calibration method 'nosuch'"):
        export_model(missing, precisions=("fp32", "int8"), calib_method="nosuch")
    with pytest.raises(ConfigError, match="tolerance"):
        ValidateSettings(tolerance=-1)
    with pytest.raises(ConfigError, match="--mode must be one of slide, whole"):
        EvalSettings(mode="windows")
    zero = tmp_path / "model.onnx"
    zero.write_bytes(b"")
    with pytest.raises(GKDError, match="is empty"):
        validate_export(zero, "acdc=/x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


SCORING_CASES = {
    # name: (arguments, expected message); the model named does not exist: the option is refused first
    "eval: unknown mode": (["eval", "{run}", "--mode", "windows"], "--mode must be one of slide, whole, got 'windows'"),
    "eval: zero crop": (["eval", "{run}", "--crop", "0"], "--crop must be a positive number of pixels, got 0"),
    "eval: negative stride": (["eval", "{run}", "--stride", "-4"], "--stride must be a positive number of pixels"),
    "eval: unknown split": (["eval", "{run}", "--split", "test"], "--split 'test' is not a split; use one of train, val"),
    "eval: negative workers": (["eval", "{run}", "--workers", "-1"], "--workers must be >= 0"),
    "eval: crop of an exported file": (["eval", "{onnx}", "--crop", "64"], "model.onnx has a fixed input size"),
    "validate: negative tolerance": (["validate", "{onnx}", "--tolerance", "-1"], "--tolerance is the largest |delta|"),
    "validate: unknown split": (["validate", "{onnx}", "--split", "test"], "--split 'test' is not a split"),
    "validate: negative workers": (["validate", "{onnx}", "--workers", "-2"], "--workers must be >= 0"),
}


@pytest.mark.parametrize("case", list(SCORING_CASES))
def test_eval_and_validate_refuse_a_bad_option_before_opening_anything(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    args, message = SCORING_CASES[case]
    paths = {"{run}": str(tmp_path / "no-such-run"), "{onnx}": str(tmp_path / "model.onnx")}
    code, err = run_gkd([paths.get(arg, arg) for arg in args], capsys)
    assert code == 1 and message in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(tmp_path) == {}


def test_a_later_eval_never_overwrites_the_trainings_report(tmp_path):
    from gkd_deploy.run import RunDir

    run = RunDir(tmp_path)
    assert run.new_eval_path() == tmp_path / "eval.json"
    run.eval_path.write_text("{}")
    assert run.new_eval_path() == tmp_path / "eval-2.json"
    (tmp_path / "eval-2.json").write_text("{}")
    assert run.new_eval_path() == tmp_path / "eval-3.json"
