"""GKD training on the synthetic domains with tiny models: what trains, losses, resume, DDP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.evaluation.settings import EvalSettings
from gkd_deploy.models.checkpoint import load_encoder, load_segmenter
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.distill.gkd import Distiller, ThreeTermObjective
from gkd_deploy.distill.masking import BatchRandom, first_images_mask
from gkd_deploy.training.config import DistillSettings, TaskSettings, TrainConfig
from gkd_deploy.training.sampling import GlobalBatchSampler
from gkd_deploy.training.stages import TaskObjective
from gkd_deploy.training.trainer import train
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter

SMALL_FPN = {"neck_channels": 32, "head_channels": 16, "groups": 4}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    from gkd_deploy.data.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic"), train=16, val=4, target=4, size=(256, 128),
                           seed=3, workers=1)


def tiny_config(synthetic, **overrides) -> TrainConfig:
    # Stage 3 resizes the 256 x 128 images to a short side of 64..256, so a 64 crop never needs
    # padding: with ignored (padded) pixels, per-process cross-entropy means would average over
    # different pixel counts and two processes could not match one exactly.
    distill = DistillSettings(steps=6, batch_size=4, img_size=64, patch_size=16, warmup_steps=1, base_lr=0.5,
                              ema_decay=0.9)
    config = TrainConfig(
        teacher="tiny-teacher", student="tiny-student", pretrained=False,
        proxy=f"images={synthetic.cityscapes / 'leftImg8bit' / 'train'}", source=f"cityscapes={synthetic.cityscapes}",
        targets=(f"acdc={synthetic.acdc}",), stages=(1, 2, 3), stage1=distill, stage2=distill,
        stage3=TaskSettings(steps=6, batch_size=4, crop_size=64, short_side=128, lr=1e-3, decoder="semfpn",
                            decoder_options=SMALL_FPN),
        workers=0, checkpoint_every=3, log_every=1,
    )
    return dataclasses.replace(config, **overrides)


class Recorder:
    def __init__(self, stop_after: tuple[int, int] | None = None, stop_with: type[BaseException] = KeyboardInterrupt):
        self.steps: dict[int, list[dict]] = {}
        self.stop_after = stop_after
        self.stop_with = stop_with
        self.described: dict[int, str] = {}

    def stage_described(self, stage, text):
        self.described[stage] = text

    def stage_started(self, stage, title, total_steps, start_step):
        self.steps.setdefault(stage, [])

    def step_finished(self, stage, step, metrics):
        self.steps[stage].append(dict(metrics, step=step))
        if self.stop_after == (stage, step):
            raise self.stop_with

    def stage_finished(self, stage, summary):
        pass


# --- pieces -------------------------------------------------------------------------------------

def test_exactly_the_first_half_of_the_batch_is_masked():
    # The authors' --mask_first_n: int(0.5 x B) images, the first ones, each int(0.5 x N) patches.
    generator = torch.Generator().manual_seed(0)
    mask = first_images_mask(7, 64, mask_prob=0.5, mask_ratio=0.5, generator=generator)
    assert mask.shape == (7, 64)
    assert mask[:3].sum(dim=1).tolist() == [32, 32, 32]
    assert not mask[3:].any()
    assert first_images_mask(5, 10, 0.5, 0.35, torch.Generator().manual_seed(1)).sum(1).tolist() == [3, 3, 0, 0, 0]
    # Patch choices are uniform: over many batches every patch is masked about as often.
    counts = sum(first_images_mask(2, 16, 0.5, 0.5, torch.Generator().manual_seed(s))[0].float() for s in range(2000))
    assert 0.4 < counts.min() / 2000 and counts.max() / 2000 < 0.6


def test_global_batches_split_across_processes_and_resume_in_place():
    one = GlobalBatchSampler(10, 4, seed=1, steps=7)
    halves = [GlobalBatchSampler(10, 4, seed=1, steps=7, rank=r, world_size=2) for r in range(2)]
    for step, batch in enumerate(one):
        assert halves[0].batch_at(step) + halves[1].batch_at(step) == batch
    resumed = list(GlobalBatchSampler(10, 4, seed=1, steps=7, start_step=4))
    assert resumed == list(one)[4:]
    # An epoch is a permutation: two batches of one epoch never repeat an index.
    first_epoch = [i for step in range(2) for i, _ in one.batch_at(step)]
    assert len(set(first_epoch)) == 8


def test_teacher_gets_no_gradient_and_student_and_heads_do():
    student = create_encoder("tiny-student", img_size=64)
    teacher = create_encoder("tiny-teacher", img_size=64)
    objective = ThreeTermObjective(student.embed_dim, teacher.embed_dim, mask_prob=1.0)
    distiller = Distiller(student, teacher, objective).train()
    assert not teacher.training
    images = torch.rand(2, 3, 64, 64) * 255
    losses = distiller(images, BatchRandom.single(2))
    losses["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.mask_token.grad is not None and student.mask_token.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.heads.parameters())
    assert set(losses) == {"feature", "patch", "token", "loss"}


def test_task_stage_trains_the_decoder_only():
    segmenter = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64,
                                                decoder_options=SMALL_FPN))
    task = TaskObjective(segmenter, train_encoder=False).train()
    assert not segmenter.encoder.training and segmenter.decoder.training
    labels = torch.randint(0, 19, (2, 64, 64))
    task(torch.rand(2, 3, 64, 64) * 255, labels, BatchRandom.single(2))["loss"].backward()
    assert all(p.grad is None for p in segmenter.encoder.parameters())
    assert all(p.grad is not None for p in segmenter.decoder.parameters())


def test_label_fraction_is_a_fixed_subset(synthetic):
    from gkd_deploy.training.data import load_training_set

    dataset = load_training_set(f"cityscapes={synthetic.cityscapes}", labeled=True)
    eighth = dataset.subset(1 / 8, seed=0)
    assert len(eighth) == 2
    assert eighth.items == dataset.subset(1 / 8, seed=0).items
    assert eighth.items != dataset.subset(1 / 8, seed=5).items or len(dataset) < 4


def test_config_errors_name_the_field(synthetic):
    with pytest.raises(ConfigError, match="stage3.label_fraction"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": [2, 3], "stage3": {"label_fraction": 0.3}})
    with pytest.raises(ConfigError, match="--proxy"):
        TrainConfig.from_dict({"source": "cityscapes=/x"})
    with pytest.raises(ConfigError, match="did you mean 'stage2.steps'"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": "2,3", "stage2": {"step": 3}})
    config = tiny_config(synthetic)
    assert TrainConfig.from_dict(config.to_dict()) == config


# --- whole stages -------------------------------------------------------------------------------

def test_every_stage_lowers_its_loss_and_the_run_folder_is_complete(synthetic, tmp_path):
    config = tiny_config(synthetic, stage1=dataclasses.replace(tiny_config(synthetic).stage1, steps=30),
                         stage2=dataclasses.replace(tiny_config(synthetic).stage2, steps=30),
                         stage3=dataclasses.replace(tiny_config(synthetic).stage3, steps=30), checkpoint_every=30)
    recorder = Recorder()
    result = train(config, tmp_path / "run", callbacks=recorder)
    for stage in (1, 2, 3):
        losses = [m["loss"] for m in recorder.steps[stage]]
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < 0.9 * first, (stage, losses)
    run = result.run
    assert (run.path / "config.yaml").is_file() and (run.path / "metrics.json").is_file()
    assert (run.path / "train.log").is_file()
    for name in ("stage1-student.safetensors", "stage2-student.safetensors", "segmenter.safetensors"):
        assert (run.checkpoint_dir / name).is_file()
    model = load_segmenter(run.segmenter_checkpoint)
    assert model.config.decoder == "semfpn"
    encoder, encoder_config = load_encoder(run.checkpoint_dir / "stage2-student.safetensors")
    assert encoder_config.encoder == "tiny-student" and encoder_config.img_size == 64
    # Stage 3 froze the stage-2 encoder: the segmenter carries exactly those weights.
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value, rtol=0, atol=0)
    assert [d.domain for d in result.evaluation.report.domains] == ["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]
    trained_report = (run.path / "eval.json").read_text()
    # A later evaluation of the run (its own targets by default) writes beside, never over, the training's report.
    from gkd_deploy.evaluation.runner import evaluate_model

    again = evaluate_model(run.path, settings=EvalSettings(workers=0))
    assert again.json_path == run.path / "eval-2.json" and again.json_path.is_file()
    assert (run.path / "eval.json").read_text() == trained_report


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


class Killed(Exception):
    """Stands for a process killed without a chance to save (the periodic checkpoint is all there is)."""


@pytest.mark.parametrize("stop_with,saved_step,replayed", [(KeyboardInterrupt, 5, [6]), (Killed, 3, [4, 5, 6])])
def test_resume_continues_exactly_where_the_run_stopped(synthetic, tmp_path, stop_with, saved_step, replayed):
    config = tiny_config(synthetic, stages=(2, 3))
    reference = train(config, tmp_path / "whole", callbacks=Recorder())
    with pytest.raises(stop_with):
        train(config, tmp_path / "cut", callbacks=Recorder(stop_after=(3, 5), stop_with=stop_with))
    state = torch.load(tmp_path / "cut" / "checkpoints" / "stage3-state.pt", weights_only=True)
    assert state["step"] == saved_step  # Ctrl-C saves the last finished step; a kill keeps step 3's
    recorder = Recorder()
    train(None, tmp_path / "cut", resume=True, callbacks=recorder)
    assert 2 not in recorder.steps, "a finished stage is not run again"
    assert [m["step"] for m in recorder.steps[3]] == replayed
    for name in ("stage2-student.safetensors", "segmenter.safetensors"):
        want = _weights(reference.run.checkpoint_dir / name)
        got = _weights(tmp_path / "cut" / "checkpoints" / name)
        assert want.keys() == got.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    # metrics.csv: every logged step once, as in the uninterrupted run, with the same losses.
    def csv_rows(run_path):
        import csv

        with (run_path / "metrics.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {(r["stage"], r["step"], r["metric"]): r["value"] for r in rows if r["metric"] != "images_per_s"}, len(rows)

    whole, whole_count = csv_rows(tmp_path / "whole")
    cut, cut_count = csv_rows(tmp_path / "cut")
    assert cut_count == whole_count and cut.keys() == whole.keys()
    assert {(stage, step) for stage, step, _ in whole} == {(s, str(t)) for s in ("2", "3") for t in range(1, 7)}
    assert all(float(cut[key]) == pytest.approx(float(whole[key]), rel=1e-5) for key in whole)


def test_a_run_folder_is_not_overwritten(synthetic, tmp_path):
    config = tiny_config(synthetic, stages=(3,))
    train(config, tmp_path / "run", callbacks=Recorder())
    with pytest.raises(ConfigError, match="--resume"):
        train(config, tmp_path / "run")


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch(synthetic, tmp_path):
    from gkd_deploy.training.trainer import launch

    # Dropout masks are drawn per process (as in any DDP run), so the comparison turns dropout off.
    base = tiny_config(synthetic)
    config = tiny_config(synthetic, stages=(2, 3), targets=(), stage3=dataclasses.replace(
        base.stage3, decoder_options={**SMALL_FPN, "dropout": 0.0}))
    train(config, tmp_path / "one", callbacks=Recorder())
    launch(config, tmp_path / "two", devices=2)
    import json

    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for stage in ("stage2", "stage3"):  # the last step's losses, averaged over the two ranks
        for term in ("loss", "grad_norm") if stage == "stage2" else ("loss",):
            # The gradient norm sums every parameter's square: kernels that add in another order
            # (one thread per process against two in one) move it by up to 4.4e-4 on AVX2 machines.
            assert two[stage][term] == pytest.approx(one[stage][term], rel=1e-4 if term == "loss" else 1e-3), \
                (stage, term)
    for name in ("stage2-student.safetensors", "segmenter.safetensors"):
        want = _weights(tmp_path / "one" / "checkpoints" / name)
        got = _weights(tmp_path / "two" / "checkpoints" / name)
        for key in want:
            # Float sums in another order; AdamW turns near-zero gradient noise into steps of up
            # to lr (here 4e-3) in rare elements, so single elements get a looser bound than the mean.
            difference = (got[key] - want[key]).abs()
            assert difference.max() < 2e-3 and difference.mean() < 2e-5, (name, key, difference.max())


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    from gkd_deploy.training.loop import TrainingError
    from gkd_deploy.training import stages

    original = stages.TaskObjective.forward
    calls = {"n": 0}

    def poisoned(self, images, labels, random):
        calls["n"] += 1
        losses = original(self, images, labels, random)
        if calls["n"] == 5:  # step 4: after the state saved at step 3
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(stages.TaskObjective, "forward", poisoned)
    config = tiny_config(synthetic, stages=(3,))
    with pytest.raises(TrainingError, match="stage 3: the loss became nan at step 4"):
        train(config, tmp_path / "run", callbacks=Recorder())
    state = torch.load(tmp_path / "run" / "checkpoints" / "stage3-state.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(t).all() for t in state["trained"].values())
    assert not (tmp_path / "run" / "checkpoints" / "segmenter.safetensors").exists()
    monkeypatch.setattr(stages.TaskObjective, "forward", original)
    recorder = Recorder()
    train(None, tmp_path / "run", resume=True, callbacks=recorder)
    assert [m["step"] for m in recorder.steps[3]] == [4, 5, 6]


def test_no_weight_decay_on_norms_and_query_and_level_embeddings():
    from gkd_deploy.models.decoders import build_decoder
    from gkd_deploy.training.optim import param_groups

    decoder = build_decoder("mask2former-edge", in_channels=32, num_levels=4, num_classes=19)
    decay, no_decay = param_groups(decoder, 0.05, decay_biases=True)
    names = {id(p): n for n, p in decoder.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert {"transformer.query_feat.weight", "transformer.query_embed.weight", "transformer.level_embed.weight",
            "pixel_decoder.level_embed"} <= undecayed
    norm_like = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.Embedding)
    exempt = {f"{m_name}.{p_name}" for m_name, module in decoder.named_modules() if isinstance(module, norm_like)
              for p_name, _ in module.named_parameters(recurse=False)}
    assert undecayed == exempt | {"pixel_decoder.level_embed"}
    assert "transformer.head.class_embed.weight" not in undecayed  # linear layers are decayed


SMALL_M2F = {"hidden_dim": 32, "num_queries": 10, "dec_layers": 2, "pixel_layers": 1, "num_heads": 2,
             "dim_feedforward": 64, "pixel_ffn": 64, "num_points": 256, "groups": 8}


def test_mask2former_task_stage_raises_source_miou(synthetic, tmp_path):
    from gkd_deploy.evaluation.runner import evaluate_model
    from gkd_deploy.models.checkpoint import save_segmenter
    from gkd_deploy.training.stages import student_encoder

    base = tiny_config(synthetic)
    config = tiny_config(synthetic, stages=(3,), targets=(), stage3=dataclasses.replace(
        base.stage3, decoder="mask2former", decoder_options=SMALL_M2F, steps=60, lr=3e-3, batch_size=4))
    # The segmenter stage 3 starts from: same seed, same construction order as the stage.
    torch.manual_seed(config.seed * 31 + 3)
    from gkd_deploy.data.classes import CITYSCAPES

    start = build_segmenter(SegmenterConfig("tiny-student", decoder="mask2former", decoder_options=SMALL_M2F,
                                            img_size=64, class_set=CITYSCAPES))
    start.encoder = student_encoder(config, None, 64, 16)
    save_segmenter(start, tmp_path / "start.safetensors")
    source_val = f"cityscapes={synthetic.cityscapes}"
    before = evaluate_model(tmp_path / "start.safetensors", source_val, EvalSettings(workers=0)).report.domains[0].miou
    recorder = Recorder()
    result = train(config, tmp_path / "run", callbacks=recorder)
    after = evaluate_model(result.run.path, source_val, EvalSettings(workers=0)).report.domains[0].miou
    losses = [m["loss"] for m in recorder.steps[3]]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert after > before + 1.0, (before, after)
    assert load_segmenter(result.run.segmenter_checkpoint).config.decoder == "mask2former"


# --- the authors' recipe: patch sizes per stage, raw hand-off, EMA, the baselines' stage 3 -------

def test_the_ema_decay_means_what_the_config_says():
    from gkd_deploy.training.stages import student_ema

    module = torch.nn.Linear(3, 2, bias=False)
    start = module.weight.detach().clone()
    ema = student_ema(module, 0.9, torch.device("cpu"))
    history = []
    for value in (1.0, 2.0):
        with torch.no_grad():
            module.weight.fill_(value)
        ema.update(module)
        history.append(value)
    expected = 0.9 * (0.9 * start + 0.1 * history[0]) + 0.1 * history[1]
    torch.testing.assert_close(ema.module.weight, expected)


def test_stage_one_runs_at_patch_14_and_stage_two_starts_from_its_raw_weights(synthetic, tmp_path):
    from gkd_deploy.models.patch_grid import fit_state_dict

    base = tiny_config(synthetic)
    # Stage 1 at patch 14 (56 px: 4 x 4 tokens), stage 2 at patch 16 (64 px: the same grid). Stage 2's
    # learning rate is negligible, so its result is the weights it started from.
    config = tiny_config(synthetic, stages=(1, 2), targets=(),
                         stage1=dataclasses.replace(base.stage1, img_size=56, patch_size=14, ema_decay=0.5),
                         stage2=dataclasses.replace(base.stage2, base_lr=1e-12, min_lr=0.0, warmup_steps=0, ema=False))
    train(config, tmp_path / "run", callbacks=Recorder())
    checkpoints = tmp_path / "run" / "checkpoints"
    stage1, stage1_config = load_encoder(checkpoints / "stage1-student.safetensors")
    assert stage1_config.patch_size == 14 and stage1_config.img_size == 56
    assert stage1.backbone.patch_embed.proj.weight.shape[-1] == 14
    raw, ema = _weights(checkpoints / "stage1-student.safetensors"), _weights(checkpoints / "stage1-student-ema.safetensors")
    assert not torch.allclose(raw["backbone.blocks.0.attn.qkv.weight"], ema["backbone.blocks.0.attn.qkv.weight"])
    stage2, stage2_config = load_encoder(checkpoints / "stage2-student.safetensors")
    assert stage2_config.patch_size == 16 and stage2.backbone.patch_embed.proj.weight.shape[-1] == 16
    assert not (checkpoints / "stage2-student-ema.safetensors").exists()
    # The RAW stage-1 weights, kernel resized 14 -> 16 (bicubic) and position embedding fitted.
    expected = fit_state_dict(raw, stage2.backbone, prefix="backbone.")
    for key, value in stage2.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("method", ["qsd", "mse", "proteus", "fitnets", "cwd", "vitkd", "afdcd", "g2sd"])
def test_every_distillation_method_trains_the_student_only(method):
    from gkd_deploy.distill.methods import MethodInputs, build_objective

    student = create_encoder("tiny-student", img_size=64)
    teacher = create_encoder("tiny-teacher", img_size=64)
    options = {"afdcd": {"pool": 1, "patch": 2, "groups": 4}, "g2sd": {"decoder_dim": 32, "depth": 1, "num_heads": 2}}
    objective = build_objective(method, student, teacher, MethodInputs(student.embed_dim, teacher.embed_dim, (4, 4),
                                                                        options=options.get(method)))
    distiller = Distiller(student, teacher, objective).train()
    losses = distiller(torch.rand(4, 3, 64, 64) * 255, BatchRandom.single(4))
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_methods_refuse_what_they_cannot_run():
    from gkd_deploy.distill.methods import MethodInputs, build_objective
    from tests.test_models import TINY_EVA

    student, teacher = create_encoder("tiny-student", img_size=64), create_encoder("tiny-teacher", img_size=64)
    inputs = MethodInputs(student.embed_dim, teacher.embed_dim, (4, 4))
    with pytest.raises(ConfigError, match="unknown distillation method 'qsdd'"):
        build_objective("qsdd", student, teacher, inputs)
    with pytest.raises(ConfigError, match="unknown option.*temperature.*takes: tau, weight"):
        build_objective("cwd", student, teacher, dataclasses.replace(inputs, options={"temperature": 2}))
    with pytest.raises(ConfigError, match="rotary"):
        build_objective("g2sd", create_encoder(TINY_EVA, img_size=64), teacher, inputs)
    with pytest.raises(ConfigError, match="did you mean 'cwd'"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": [2, 3], "stage2": {"method": "cdw"}})
    with pytest.raises(ConfigError, match="encoder_lr > 0"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": [3], "stage3": {"distill_method": "fitnets"}})


def test_stage_three_baselines_train_what_they_say(synthetic, tmp_path):
    base = tiny_config(synthetic)
    stage2 = train(tiny_config(synthetic, stages=(2,), targets=()), tmp_path / "distilled", callbacks=Recorder())
    student = _weights(stage2.run.checkpoint_dir / "stage2-student.safetensors")

    def stage3(name, **settings):
        config = tiny_config(synthetic, stages=(2, 3), targets=(), stage3=dataclasses.replace(base.stage3, **settings))
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "stage2-student.safetensors").write_bytes(
            (stage2.run.checkpoint_dir / "stage2-student.safetensors").read_bytes())
        recorder = Recorder()
        train(config, run, callbacks=recorder)
        return load_segmenter(run / "checkpoints" / "segmenter.safetensors"), recorder

    def encoder_changed(model):
        return any(not torch.equal(model.encoder.state_dict()[k], v) for k, v in student.items())

    frozen, _ = stage3("frozen")
    assert not encoder_changed(frozen)
    unfrozen, _ = stage3("unfrozen", encoder_lr=1e-3)
    assert encoder_changed(unfrozen)
    one_stage, recorder = stage3("one-stage", encoder_lr=1e-3, distill_method="fitnets", distill_weight=2.0)
    assert encoder_changed(one_stage) and all("distill" in m for m in recorder.steps[3])
    logit, recorder = stage3("logit", encoder_lr=1e-3, logit_teacher=str(tmp_path / "frozen"))
    assert all(m["logit_kd"] >= 0 for m in recorder.steps[3])
    reference, _ = stage3("teacher", encoder="teacher")
    assert reference.config.encoder == "tiny-teacher" and reference.encoder.embed_dim == 96


def test_an_eva02_student_distils_with_its_rotary_embeddings():
    from tests.test_models import TINY_EVA

    student = create_encoder(TINY_EVA, img_size=56, patch_size=14)  # EVA-02 S/B are students in the zoo
    teacher = create_encoder("tiny-teacher", img_size=56, patch_size=14)
    objective = ThreeTermObjective(student.embed_dim, teacher.embed_dim)
    losses = Distiller(student, teacher, objective).train()(torch.rand(2, 3, 56, 56) * 255, BatchRandom.single(2))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and student.mask_token.grad.abs().sum() > 0


def test_the_paper_preset_and_lengths_in_epochs():
    from gkd_deploy.training.config import load_train_config

    config = load_train_config(None, {"proxy": "images=/p", "source": "gtav=/g"}, preset="paper")
    assert (config.stage1.epochs, config.stage1.batch_size, config.stage1.img_size, config.stage1.patch_size) == (100, 512, 224, 14)
    assert (config.stage2.epochs, config.stage2.batch_size, config.stage2.img_size, config.stage2.patch_size) == (300, 128, 512, 16)
    assert (config.stage3.steps, config.stage3.batch_size, config.stage3.crop_size) == (40_000, 4, 512)
    assert config.stage1.warmup_steps == config.stage2.warmup_steps == 0 and config.stage2.clip_grad == 0
    assert config.stage2.lr() == pytest.approx(5e-4 * 128 / 512)
    # Epochs become steps when a stage sees its data: whole batches per epoch (ImageNet, GTAV).
    assert config.stage1.steps_for(1_281_167) == 100 * (1_281_167 // 512)
    assert config.stage2.steps_for(24_966) == 300 * 195
    assert config.stage3.decoder == "mask2former" and config.stage2.method == "qsd" and config.stage2.handoff == "raw"


def test_several_source_domains_train_as_one_set(synthetic, tmp_path):
    import tests.fixtures_data as fx
    from gkd_deploy.training.data import load_training_set

    synthia = fx.make_synthia(tmp_path / "synthia", frames=3)
    both = load_training_set([f"cityscapes={synthetic.cityscapes}", f"synthia={synthia}"], labeled=True)
    assert both.names == ("cityscapes", "synthia") and len(both) == 16 + 3
    assert {tuple(sorted(item)) for item in (both[0], both[len(both) - 1])} == {("image", "label", "name")}
    config = tiny_config(synthetic, distill_extra=(f"synthia={synthia}",))
    assert config.distill_extra == (f"synthia={synthia}",)  # stage 2 distils on source + these images
    with pytest.raises(DataError, match="needs labels"):
        load_training_set([f"cityscapes={synthetic.cityscapes}", f"images={synthetic.cityscapes / 'leftImg8bit'}"],
                          labeled=True)


def test_settings_of_earlier_versions_say_what_replaced_them():
    with pytest.raises(ConfigError, match="'patch_size' is no longer used: the patch size is set per stage"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": [3], "patch_size": 16})
    with pytest.raises(ConfigError, match="'stage2.loss' is no longer used.*stageN.method"):
        TrainConfig.from_dict({"source": "cityscapes=/x", "stages": [2], "stage2": {"loss": "mse"}})


def test_a_run_folder_stores_absolute_paths_and_evaluates_from_anywhere(synthetic, tmp_path, monkeypatch):
    from gkd_deploy.evaluation.runner import evaluate_model

    monkeypatch.chdir(synthetic.cityscapes.parent)  # the data named relative to here
    config = tiny_config(synthetic, stages=(3,), teacher=None, proxy=(),
                         source=f"cityscapes={synthetic.cityscapes.name}", targets=(f"acdc={synthetic.acdc.name}",))
    run = train(config, tmp_path / "run").run
    stored = yaml.safe_load(run.config_path.read_text())
    assert stored["source"] == [f"cityscapes={synthetic.cityscapes}"] and stored["targets"] == [f"acdc={synthetic.acdc}"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outcome = evaluate_model(Path("..") / "run", settings=EvalSettings(workers=0))  # relative run path, the run's own targets
    assert [d.domain for d in outcome.report.domains] == ["acdc-fog", "acdc-night", "acdc-rain", "acdc-snow"]


def test_resume_over_a_damaged_stage_result_says_which_file_and_what_to_do(synthetic, tmp_path):
    config = tiny_config(synthetic, stages=(2, 3))
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", callbacks=Recorder(stop_after=(3, 2)))
    result = tmp_path / "run" / "checkpoints" / "stage2-student.safetensors"
    result.write_bytes(result.read_bytes()[:100])  # a copy cut short
    with pytest.raises(ConfigError, match=r"stage 2 finished, but its result .*stage2-student.safetensors is damaged"
                                          r".*delete it to train stage 2 again"):
        train(None, tmp_path / "run", resume=True, callbacks=Recorder())


@pytest.mark.parametrize("has_bf16, device, mode, warns", [
    (False, "cpu", "bf16", True),
    (True, "cpu", "bf16", False),
    (None, "cpu", "bf16", False),  # torch cannot tell: no guess
    (False, "cpu", "auto", False),
    (False, "cuda", "bf16", False),
])
def test_bf16_autocast_on_a_cpu_without_bf16_instructions_is_warned_of(monkeypatch, has_bf16, device, mode, warns):
    from gkd_deploy.training import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: has_bf16)
    warning = loop.slow_autocast_warning(torch.device(device), mode)
    assert (warning is not None) is warns
    if warns:
        assert "autocast: auto" in warning


def test_a_stage_with_emulated_bf16_logs_the_warning_once(synthetic, tmp_path, monkeypatch, caplog):
    from gkd_deploy.training import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    loop._warn_once.cache_clear()
    config = tiny_config(synthetic, autocast="bf16", stages=(2, 3))
    config = dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, steps=2),
                                 stage3=dataclasses.replace(config.stage3, steps=2))
    with caplog.at_level("WARNING", logger="gkd_deploy.training.loop"):
        train(config, tmp_path / "run", callbacks=Recorder())
    warnings = [r for r in caplog.records if "without bf16 instructions" in r.getMessage()]
    assert len(warnings) == 1
