"""Semi-supervised instance distillation (`gkd train --task instance`): config, data, pseudo-labels,
the unified objective, the phases end to end, resume, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from gkd_deploy.cli.app import app, main
from gkd_deploy.data.synthetic import write_synthetic
from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.instance.teacher import PseudoInstances
from gkd_deploy.models.checkpoint import checkpoint_format, load_instance_segmenter
from gkd_deploy.models.instance_segmenter import InstanceSegmenter
from gkd_deploy.run import RunDir
from gkd_deploy.sskd.config import InstanceTrainConfig
from gkd_deploy.sskd.data import MAX_INSTANCES, batch_instances, encode_instances
from gkd_deploy.sskd.objective import StepRandom, strong_views
from gkd_deploy.sskd.phases import initial_model
from gkd_deploy.sskd.pseudo import PseudoLabels, label_pool, write_pseudo_labels
from gkd_deploy.sskd.recipes import apply_instance_recipe
from gkd_deploy.instance.views import ViewAugmentation
from gkd_deploy.training.schedule import warmup_multistep
from gkd_deploy.training.trainer import train
from tests.test_instance_model import SMALL_DECODER
from tests.test_training import Recorder

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

MODEL = {"neck": "dpt", "neck_channels": 32, "decoder_options": SMALL_DECODER}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("sskd")
    write_synthetic(root, train=10, val=2, target=0, size=(128, 64), seed=1, workers=1)
    return root / "cityscapes-synth"


def tiny(data, **changes) -> dict:
    phase = {"steps": 3, "batch_size": 2}
    values = {
        "teacher": {"encoder": "tiny-teacher", **MODEL}, "student": {"encoder": "tiny-student", **MODEL},
        "pretrained": False, "source": f"cityscapes={data}", "targets": f"cityscapes={data}", "label_fraction": 0.3,
        "finetune": phase, "selftrain": {**phase, "unlabelled_batch_size": 2},
        "transfer": {**phase, "unlabelled_batch_size": 2}, "refine": phase,
        "crop_size": 64, "short_side": 64, "img_size": 64, "num_negatives": 16, "max_anchors": 64,
        "projection_dim": 16, "workers": 0, "log_every": 1, "checkpoint_every": 2, "device": "cpu",
    }
    return {**values, **changes}


# --- config and recipes ------------------------------------------------------------------------------

def test_the_recipes_are_phase_subsets_and_the_supervised_student_gets_the_same_budget(synthetic):
    config = InstanceTrainConfig.from_dict(tiny(synthetic, transfer={"steps": 7, "batch_size": 2,
                                                                       "unlabelled_batch_size": 2}))
    assert apply_instance_recipe(config, "sskd").phases == ("finetune", "selftrain", "transfer", "refine")
    assert apply_instance_recipe(config, "sskd-no-adaptation").phases == ("finetune", "transfer", "refine")
    assert apply_instance_recipe(config, "sskd-no-refinement").phases == ("finetune", "selftrain", "transfer")
    supervised = apply_instance_recipe(config, "supervised")
    assert supervised.phases == ("refine",) and supervised.refine.steps == 7 + 3 and supervised.recipe == "supervised"
    with pytest.raises(ConfigError, match="unknown instance recipe 'skd'. Did you mean 'sskd'"):
        apply_instance_recipe(config, "skd")


@pytest.mark.parametrize("change,message", [
    ({"phases": ["selftrain", "transfer"]}, "run the phase finetune before it"),
    ({"phases": ["transfer", "finetune"]}, "in the order finetune, selftrain, transfer, refine"),
    ({"phases": ["finetune", "selfrain"]}, "unknown phase 'selfrain' \\(did you mean 'selftrain'\\?\\)"),
    ({"phases": ["finetune"]}, "train only the teacher"),
    ({"phases": ["transfer", "refine"]}, "trained in the phase finetune"),
    ({"label_fraction": 0}, "label fraction must be a number between 0 and 1"),
    ({"label_fraction": 1.0}, "label fraction must be a number between 0 and 1"),
    ({"teacher_kind": "grounded-sam"}, "used zero-shot .*drop the phases finetune, selftrain"),
    ({"transfer": {"steps": 3, "batch_size": 2, "unlabelled_batch_size": 0}},
     "transfer.unlabelled_batch_size must be positive"),
    ({"refine": {"steps": 3, "batch_size": 2, "unlabelled_batch_size": 2}}, "refine trains on labels only"),
    ({"student": {"encoder": "effnet-lite0"}}, "is a CNN"),
    ({"teacher": {"encoder": "tiny-teacher", "decoder": "semfpn"}}, "instance mode"),
    ({"crop_size": 60}, "crop_size 60 must be a multiple of patch_size 16"),
    ({"source": ()}, "needs a labelled instance data set"),
    ({"unknown": 1}, "unknown setting 'unknown'"),
    ({"transfer": {"steps": 3, "batch_size": 2, "unlabelled_batch_size": 2, "dropout": 1.0}},
     r"transfer.dropout must be in \[0, 1\), got 1.0"),
    ({"memory_bank": -1}, "memory_bank must be a whole number >= 0"),
])
def test_a_bad_config_is_refused_with_the_setting_named(synthetic, change, message):
    with pytest.raises((ConfigError, Exception), match=message):
        InstanceTrainConfig.from_dict(tiny(synthetic, **change))


def test_only_the_knowledge_transfer_has_dropout_by_default_and_the_memory_bank_is_off():
    config = InstanceTrainConfig()
    assert [config.phase(p).dropout for p in ("finetune", "selftrain", "transfer", "refine")] == [0.0, 0.0, 0.1, 0.0]
    assert config.memory_bank == 0


def test_the_teacher_phases_decay_the_rate_tenfold_at_90_and_95_percent():
    rates = [warmup_multistep(step, 100, 1.0, 0) for step in (0, 89, 90, 94, 95, 99)]
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert warmup_multistep(4, 100, 1.0, 10) == pytest.approx(0.5)


# --- data -------------------------------------------------------------------------------------------

def test_instances_travel_as_an_id_map_and_come_back_as_masks():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    masks[2, :2, :2] = True  # inside mask 0: overlaps it
    scores = np.array([0.9, 0.5, 0.4], np.float32)
    ids, classes = encode_instances(masks, np.array([2, 0, 5]), scores)
    assert classes.shape == (MAX_INSTANCES,) and (classes[3:] == -1).all()
    # Painted in order of increasing score: the most confident instance keeps the overlap.
    assert sorted(classes[:3].tolist()) == [0, 2, 5]
    decoded = batch_instances(torch.from_numpy(ids)[None], torch.from_numpy(classes)[None])
    (got_classes, got_masks), = decoded
    by_class = {int(c): m for c, m in zip(got_classes, got_masks)}
    assert by_class[2].sum() == 16 and by_class[2][0, 0]  # instance 0 (0.9) wins the overlap
    assert 5 not in by_class  # fully covered by a more confident instance: gone from the targets
    assert by_class[0].sum() == 16
    # A crop that cuts an instance away drops it.
    cropped = torch.from_numpy(ids)[None, :4, :4]
    (crop_classes, crop_masks), = batch_instances(cropped, torch.from_numpy(classes)[None])
    assert crop_classes.tolist() == [2] and crop_masks.shape == (1, 4, 4)


class FixedTeacher:
    class_names = ("a", "b")

    def pseudo_label(self, images):
        height, width = images.shape[2:]
        masks = torch.zeros(3, height, width, dtype=torch.bool)
        masks[0, :10] = True
        masks[1, 10:20] = True  # masks[2] stays empty: dropped
        return [PseudoInstances(torch.tensor([1, 0, 1]), masks, torch.tensor([0.8, 0.2, 0.9]))]


def test_the_pool_is_labelled_once_above_the_threshold_and_reads_back(synthetic, tmp_path):
    from gkd_deploy.data.instances import CityscapesInstanceDataset
    from gkd_deploy.data.instances.splits import split_dataset

    _, pool = split_dataset(CityscapesInstanceDataset(synthetic, "train"), 0.3, 0)
    labels = label_pool(FixedTeacher(), pool, 0.3, "fixed")
    assert len(labels) == len(pool) and labels.num_instances == len(pool)  # 0.2 below, the empty mask dropped
    path = write_pseudo_labels(labels, tmp_path / "pseudo" / "transfer.json")
    names = [pool.dataset.names[int(i)] for i in pool.indices]
    back = PseudoLabels.read(path, names)
    first = back.images[0]
    assert first.classes.tolist() == [1] and first.scores.tolist() == pytest.approx([0.8])
    masks = first.masks()
    assert masks.shape == (1, 64, 128) and masks[0, :10].all() and not masks[0, 10:].any()
    with pytest.raises(DataError, match="other images than this run's unlabelled pool"):
        PseudoLabels.read(path, names[::-1])
    path.write_text("{")
    with pytest.raises(DataError, match="cannot be read .*delete the file"):
        PseudoLabels.read(path, names)


# --- the objective's randomness ---------------------------------------------------------------------

def test_views_are_drawn_per_global_position_so_processes_see_what_one_process_sees():
    images = torch.rand(4, 3, 32, 32) * 255
    augmentation = ViewAugmentation((32, 32), flip_probability=0.0)
    one = strong_views(images, augmentation, StepRandom(0, 2, 5, 0, 0, 0).view_generators(4, 0))
    second_rank = strong_views(images[2:], augmentation, StepRandom(0, 2, 5, 1, 2, 0).view_generators(2, 0))
    torch.testing.assert_close(second_rank.strong.images, one.strong.images[2:], rtol=0, atol=0)
    torch.testing.assert_close(one.weak.images, images, rtol=0, atol=1e-4)  # the weak view is the batch itself
    other_step = strong_views(images, augmentation, StepRandom(0, 2, 6, 0, 0, 0).view_generators(4, 0))
    assert not torch.equal(other_step.strong.images, one.strong.images)


def test_the_teacher_is_re_initialised_to_the_same_weights_it_was_fine_tuned_from(synthetic):
    from gkd_deploy.data.classes import CITYSCAPES_THINGS

    config = InstanceTrainConfig.from_dict(tiny(synthetic))
    first, second = (initial_model(config, "teacher", CITYSCAPES_THINGS) for _ in range(2))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    student = initial_model(config, "student", CITYSCAPES_THINGS)
    assert student.config.encoder == "tiny-student"


# --- end to end -------------------------------------------------------------------------------------

def _weights(path):
    return load_file(str(path))


def test_all_four_phases_train_and_leave_the_teacher_the_pseudo_labels_and_the_student(synthetic, tmp_path,
                                                                                        monkeypatch):
    rates = []
    set_dropout = InstanceSegmenter.set_dropout
    monkeypatch.setattr(InstanceSegmenter, "set_dropout", lambda self, rate: (rates.append(rate), set_dropout(self, rate)))
    recorder = Recorder()
    result = train(InstanceTrainConfig.from_dict(tiny(synthetic)), tmp_path / "run", callbacks=recorder)
    run = result.run
    assert rates == [0.0, 0.0, 0.1, 0.0]  # the paper's dropout in the knowledge transfer alone
    assert "dropout 0.1" in recorder.described[3] and "dropout" not in recorder.described[4]
    assert sorted(recorder.steps) == [1, 2, 3, 4] and all(len(v) == 3 for v in recorder.steps.values())
    assert {"sup", "pseudo", "pxl"} <= set(recorder.steps[2][0]) and {"sup", "pseudo", "pxl"} <= set(recorder.steps[3][0])
    assert "pseudo" not in recorder.steps[1][0] and "pxl" not in recorder.steps[4][0]
    for phase in ("finetune", "selftrain", "transfer", "refine"):
        assert checkpoint_format(run.phase_result(phase)) == "gkd-instance-segmenter"
    for phase in ("selftrain", "transfer"):
        data = json.loads(run.pseudo_labels(phase).read_text())
        assert len(data["images"]) == 7 and data["threshold"] == 0.3  # 10 train images, 3 labelled
    assert json.loads(run.pseudo_labels("selftrain").read_text())["teacher"] == "checkpoints/teacher-finetune.safetensors"
    assert json.loads(run.pseudo_labels("transfer").read_text())["teacher"] == "checkpoints/teacher-selftrain.safetensors"
    # The final student is the run's segmenter, with the refined weights.
    final, refined = _weights(run.segmenter_checkpoint), _weights(run.phase_result("refine"))
    assert all(torch.equal(final[k], refined[k]) for k in refined)
    assert load_instance_segmenter(run.segmenter_checkpoint).config.encoder == "tiny-student"
    assert isinstance(run.config(), InstanceTrainConfig) and run.config().recipe == "sskd"
    report = json.loads(run.eval_path.read_text())
    assert report["task"] == "instance" and report["domains"][0]["num_images"] == 2
    metrics = json.loads(run.metrics_path.read_text())
    assert set(metrics) == {"stage1", "stage2", "stage3", "stage4"}


@pytest.mark.parametrize("memory_bank", [0, 100])
def test_resume_continues_exactly_where_the_run_stopped(synthetic, tmp_path, memory_bank):
    # The transfer has dropout; with a memory bank (64 pixels a step, so it wraps at step 2) the
    # memory must come back with the state too, or step 3 would see another pool of negatives.
    config = InstanceTrainConfig.from_dict(tiny(synthetic, phases=["finetune", "selftrain", "transfer"],
                                                targets=(), memory_bank=memory_bank))
    train(config, tmp_path / "whole", callbacks=Recorder())
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", callbacks=Recorder(stop_after=(3, 2)))
    state = torch.load(tmp_path / "cut" / "checkpoints" / "transfer-state.pt", weights_only=True)
    assert state["step"] == 2
    if memory_bank:
        assert int(state["extras"]["negative_memory"]["count"]) == 100
    recorder = Recorder()
    train(None, tmp_path / "cut", resume=True, callbacks=recorder)
    assert sorted(recorder.steps) == [3] and [m["step"] for m in recorder.steps[3]] == [3]
    whole, cut = RunDir(tmp_path / "whole"), RunDir(tmp_path / "cut")
    for file in (whole.phase_result("transfer"), whole.segmenter_checkpoint):
        want, got = _weights(file), _weights(cut.path / file.relative_to(whole.path))
        assert want.keys() == got.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    assert cut.pseudo_labels("transfer").read_text() == whole.pseudo_labels("transfer").read_text()


def test_supervised_student_trains_on_labels_alone_without_a_teacher(synthetic, tmp_path):
    config = apply_instance_recipe(InstanceTrainConfig.from_dict(tiny(synthetic, targets=())), "supervised")
    recorder = Recorder()
    run = train(config, tmp_path / "run", callbacks=recorder).run
    assert sorted(recorder.steps) == [4] and len(recorder.steps[4]) == 6
    assert not (run.path / "pseudo").exists() and not run.phase_result("finetune").exists()
    assert run.segmenter_checkpoint.is_file()


# --- the command line and bad input --------------------------------------------------------------

def _config_file(tmp_path, data, **changes):
    values = tiny(data, **changes)
    for key in ("source", "targets", "label_fraction"):
        values.pop(key, None)
    path = tmp_path / "sskd.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_gkd_train_task_instance_runs_the_recipe_and_prints_mask_ap(synthetic, tmp_path):
    config = _config_file(tmp_path, synthetic)
    result = CliRunner().invoke(app, ["train", "--task", "instance", "--recipe", "sskd-no-adaptation",
                                      "--label-fraction", "0.3", "--source", f"cityscapes={synthetic}",
                                      "--targets", f"cityscapes={synthetic}", "--config", str(config),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "mask AP" in result.output
    stored = RunDir(tmp_path / "run").config()
    assert stored.recipe == "sskd-no-adaptation" and stored.label_fraction == 0.3
    assert not RunDir(tmp_path / "run").phase_result("selftrain").exists()


def _one_line_error(argv: list[str], capsys, monkeypatch) -> str:
    """`gkd ARGV` through the entry point: exit 1 and one line on stderr, no traceback."""
    monkeypatch.delenv("GKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def test_a_label_fraction_of_zero_is_one_line_and_exit_1(synthetic, tmp_path, capsys, monkeypatch):
    line = _one_line_error(["train", "--task", "instance", "--label-fraction", "0", "--source", f"cityscapes={synthetic}",
                            "--config", str(_config_file(tmp_path, synthetic)), "--out", str(tmp_path / "run")],
                           capsys, monkeypatch)
    assert "label fraction must be a number between 0 and 1" in line


def test_an_empty_unlabelled_pool_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    write_synthetic(tmp_path / "one", train=1, val=0, target=0, size=(128, 64), seed=2, workers=1)
    data = tmp_path / "one" / "cityscapes-synth"
    line = _one_line_error(["train", "--task", "instance", "--label-fraction", "0.1", "--source", f"cityscapes={data}",
                            "--config", str(_config_file(tmp_path, data)), "--out", str(tmp_path / "run")],
                           capsys, monkeypatch)
    assert "the unlabelled pool is empty" in line


def test_instance_ids_that_disagree_with_the_semantic_labels_stop_the_run_before_training(synthetic, tmp_path, capsys,
                                                                                        monkeypatch):
    import shutil

    import cv2

    data = tmp_path / "bad"
    shutil.copytree(synthetic, data)
    instance_files = sorted((data / "gtFine" / "train").rglob("*_gtFine_instanceIds.png"))
    for path in instance_files:  # every image: whichever is labelled, the run meets one
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        ids[ids >= 1000] = 26 * 1000 + 1  # every instance a car, whatever the semantic label says
        ids[0, 0] = 24 * 1000 + 7  # and one person pixel where the semantic label has something else
        cv2.imwrite(str(path), ids)
    line = _one_line_error(["train", "--task", "instance", "--label-fraction", "0.3", "--source", f"cityscapes={data}",
                            "--config", str(_config_file(tmp_path, data)), "--out", str(tmp_path / "run")],
                           capsys, monkeypatch)
    assert "instanceIds.png" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_semantic_only_options_are_refused_for_an_instance_run(synthetic, tmp_path):
    result = CliRunner().invoke(app, ["train", "--task", "instance", "--stages", "2,3", "--source",
                                      f"cityscapes={synthetic}", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "--recipe" in result.output


@pytest.mark.slow
def test_two_processes_train_every_phase_on_the_same_global_batches(synthetic, tmp_path):
    """DDP: each process takes its rows of every global batch (the semantic stages' sampler), the
    projection head is out of DDP in the label-only phases, and the set losses divide by the global
    instance count. Mask2Former's point samples are drawn per process, so losses agree only roughly."""
    import csv

    from gkd_deploy.training.trainer import launch

    config = InstanceTrainConfig.from_dict(tiny(synthetic, targets=()))
    train(config, tmp_path / "one", callbacks=Recorder())
    launch(config, tmp_path / "two", devices=2)
    two = RunDir(tmp_path / "two")
    for phase in ("finetune", "selftrain", "transfer", "refine"):
        assert checkpoint_format(two.phase_result(phase)) == "gkd-instance-segmenter"
    assert two.segmenter_checkpoint.is_file()

    def first_losses(run_path):
        with (run_path / "metrics.csv").open(newline="") as handle:
            return {(r["stage"], r["metric"]): float(r["value"]) for r in csv.DictReader(handle) if r["step"] == "1"}

    one_losses, two_losses = first_losses(tmp_path / "one"), first_losses(tmp_path / "two")
    assert one_losses.keys() == two_losses.keys()
    # Step 1 of fine-tuning: the same images and initial weights; only the loss's point samples differ.
    assert two_losses[("1", "sup")] == pytest.approx(one_losses[("1", "sup")], rel=0.2)
    assert all(np.isfinite(v) for v in two_losses.values())


def test_pseudo_labels_far_sparser_than_the_labels_are_warned_of():
    from gkd_deploy.data.classes import CITYSCAPES_THINGS
    from gkd_deploy.sskd.phases import InstanceData, sparse_pseudo_label_warning
    from gkd_deploy.sskd.pseudo import ImagePseudoLabels, PseudoLabels

    def pool(counts):
        return PseudoLabels("teacher", 0.3, tuple(
            ImagePseudoLabels(f"p{i}", 4, 4, np.zeros(n, np.int64), np.full(n, 0.5, np.float32), ("",) * n)
            for i, n in enumerate(counts)))

    # 20 labelled images holding 314 instances (15.7 per image), the miniature's numbers.
    data = InstanceData(labelled=[None] * 20, pool=None, class_set=CITYSCAPES_THINGS, labelled_instances=314)
    sparse = pool([1] * 12 + [0] * 168)  # 12 instances on 180 images
    warning = sparse_pseudo_label_warning(sparse, data, "selftrain")
    assert warning is not None and "0.07 instances per pool image against 15.7" in warning
    assert "12 at score >= 0.3 on 180 images" in warning
    assert sparse_pseudo_label_warning(pool([2] * 180), data, "transfer") is None  # 2 of 15.7: over a tenth
    empty_labels = InstanceData(labelled=[None] * 20, pool=None, class_set=CITYSCAPES_THINGS, labelled_instances=0)
    assert sparse_pseudo_label_warning(sparse, empty_labels, "transfer") is None


def _as_coco_release(cityscapes, root, names):
    """The synthetic Cityscapes instance data rewritten in the COCO 2017 layout: the images copied,
    each thing instance an RLE annotation, the 8 thing classes renamed `names` (category ids 11, 13, ...)."""
    import shutil

    from pycocotools import mask as mask_util

    from gkd_deploy.data.instances import CityscapesInstanceDataset

    (root / "annotations").mkdir(parents=True)
    categories = [{"id": 11 + 2 * index, "name": name} for index, name in enumerate(names)]
    for split in ("train", "val"):
        dataset = CityscapesInstanceDataset(cityscapes, split)
        folder = root / f"{split}2017"
        folder.mkdir()
        images, annotations = [], []
        for index in range(len(dataset)):
            sample = dataset[index]
            file_name = f"{index:04d}.png"
            shutil.copy(dataset.images[index], folder / file_name)
            height, width = sample.image.shape[:2]
            images.append({"id": index + 1, "file_name": file_name, "height": height, "width": width})
            for mask, klass in zip(sample.target.masks, sample.target.classes):
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "iscrowd": 0,
                                    "category_id": categories[int(klass)]["id"],
                                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def test_a_coco_format_release_trains_with_its_own_classes(synthetic, tmp_path):
    names = ("pedestrian", "cyclist", "automobile", "lorry", "coach", "tram", "motorbike", "bike")
    coco = _as_coco_release(synthetic, tmp_path / "coco", names)
    config = InstanceTrainConfig.from_dict(tiny(synthetic, source=f"coco={coco}", targets=f"coco={coco}",
                                                phases=["finetune", "transfer", "refine"]))
    run = train(config, tmp_path / "run", callbacks=Recorder()).run
    model = load_instance_segmenter(run.segmenter_checkpoint)
    assert model.config.class_set.names == names and model.config.class_set.name == "coco"
    assert len(set(model.config.class_set.palette)) == len(names)  # a colour per class
    assert len(json.loads(run.pseudo_labels("transfer").read_text())["images"]) == 7
    report = json.loads(run.eval_path.read_text())
    assert report["domains"][0]["domain"] == "coco" and report["domains"][0]["num_images"] == 2


def test_a_coco_root_without_the_split_names_what_it_looked_for(tmp_path):
    from gkd_deploy.data.instances.coco import coco_split

    (tmp_path / "release").mkdir()
    with pytest.raises(DataError, match=r"no train annotations in .*annotations/instances_train2017.json, "
                                        r"annotations/instances_train.json, ade20k_instance_train.json"):
        coco_split(tmp_path / "release", "train")
    import cv2

    ade = tmp_path / "ade"  # ADE20K's instance release in COCO format, as Mask2Former's script writes it
    (ade / "images" / "validation").mkdir(parents=True)
    cv2.imwrite(str(ade / "images" / "validation" / "ADE_val_00000001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (ade / "ade20k_instance_val.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "ADE_val_00000001.jpg", "height": 8, "width": 8}], "annotations": [],
        "categories": [{"id": 1, "name": "bed"}]}))
    dataset = coco_split(ade, "val")
    assert dataset.class_names == ("bed",) and len(dataset) == 1
    from gkd_deploy.data.registry import build_domains, parse_dataset_arg

    with pytest.raises(ConfigError, match="instance annotations only, no semantic labels"):
        build_domains(parse_dataset_arg(f"coco={ade}"))  # a semantic model cannot be trained or scored on it
