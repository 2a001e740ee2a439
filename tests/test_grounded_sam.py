"""The Grounded-SAM teacher on tiny random Grounding-DINO and SAM2 models built here (no download):
prompt and phrase -> class mapping, box selection on hand-made logits, SAM prompted with the kept
boxes and its masks at the image's size, the empty case, `above`, loading from local folders, and
the errors for a missing transformers or unreachable weights."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from gkd_deploy.errors import ConfigError, ModelError, WeightsError
from gkd_deploy.instance import GroundedSAMTeacher, PseudoInstances, grounded_sam_teacher
from gkd_deploy.instance.grounded_sam import class_token_map, grounding_prompt, select_detections

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

CLASSES = ("person", "traffic light", "car")
HEIGHT, WIDTH = 48, 64  # not the processors' square size: masks must come back at this size
SAM_SIZE, SAM_MASK = 64, 16  # the tiny SAM2's input side and low-resolution mask side
NUM_QUERIES, MAX_TEXT_LEN = 10, 32


def tiny_vocabulary() -> dict[str, int]:
    """A WordPiece vocabulary with BERT's ids for [CLS] 101, [SEP] 102, "." 1012 and "?" 1029 (the
    ids Grounding-DINO splits phrases at), then the class words."""
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [f"[filler{i}]" for i in range(len(words), 1012)] + ["."]
    words += [f"[filler{i}]" for i in range(1013, 1029)] + ["?", "person", "traffic", "light", "car", "rider"]
    return {word: index for index, word in enumerate(words)}


@pytest.fixture(scope="module")
def tiny_parts():
    """(detector, detector processor, segmenter, segmenter processor), random weights of seed 0."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tokenizer = transformers.BertTokenizer(vocab=tiny_vocabulary())
    backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                                         layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    text = transformers.BertConfig(vocab_size=len(tiny_vocabulary()), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    detector = transformers.GroundingDinoForObjectDetection(transformers.GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        num_queries=NUM_QUERIES, encoder_n_points=1, decoder_n_points=1, max_text_len=MAX_TEXT_LEN))
    detector_processor = transformers.GroundingDinoProcessor(
        image_processor=transformers.GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tokenizer)
    hiera = transformers.Sam2HieraDetConfig(
        hidden_size=8, num_attention_heads=1, blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[2, 2, 2, 2], global_attention_blocks=[],
        window_positional_embedding_background_size=[2, 2], image_size=[SAM_SIZE, SAM_SIZE])
    segmenter = transformers.Sam2Model(transformers.Sam2Config(
        vision_config=transformers.Sam2VisionConfig(
            backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32,
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]),
        prompt_encoder_config=transformers.Sam2PromptEncoderConfig(hidden_size=32, image_size=SAM_SIZE, patch_size=16,
                                                                   mask_input_channels=4),
        mask_decoder_config=transformers.Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=32, num_hidden_layers=1,
                                                               num_attention_heads=2, iou_head_hidden_dim=32)))
    # transformers 5.0 has SAM2's (torchvision) image processor under the name with the "Fast" suffix only.
    sam2_image_processor = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    segmenter_processor = transformers.Sam2Processor(image_processor=sam2_image_processor(
        size={"height": SAM_SIZE, "width": SAM_SIZE}, mask_size={"height": SAM_MASK, "width": SAM_MASK}))
    return detector, detector_processor, segmenter, segmenter_processor


def teacher_of(parts, **options) -> GroundedSAMTeacher:
    return GroundedSAMTeacher(*parts, class_names=CLASSES, **options)


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1)) * 255


def token_positions(teacher: GroundedSAMTeacher) -> dict[str, int]:
    """The prompt's token -> its position, for tokens that occur once (the class words)."""
    tokens = teacher.detector_processor.tokenizer.convert_ids_to_tokens(teacher.text_inputs["input_ids"][0].tolist())
    return {token: position for position, token in enumerate(tokens) if tokens.count(token) == 1}


def force_detector(monkeypatch, teacher: GroundedSAMTeacher, logits: torch.Tensor, boxes: torch.Tensor) -> None:
    """Grounding-DINO runs, then its logits (Q, L) and boxes (Q, 4) are these for every image."""
    forward = teacher.detector.forward

    def forced(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        batch = outputs.logits.shape[0]
        outputs.logits = logits.expand(batch, -1, -1).clone()
        outputs.pred_boxes = boxes.expand(batch, -1, -1).clone()
        return outputs

    monkeypatch.setattr(teacher.detector, "forward", forced)


def record_segmenter(monkeypatch, teacher: GroundedSAMTeacher, low_res_masks: torch.Tensor | None = None,
                     iou_scores: torch.Tensor | None = None) -> list[torch.Tensor]:
    """SAM2 runs; the input boxes of each call are recorded, and with `low_res_masks` (M, h, w) and
    `iou_scores` (M,) its outputs become these for every box."""
    forward, calls = teacher.segmenter.forward, []

    def recorded(*args, **kwargs):
        calls.append(kwargs["input_boxes"].clone())
        outputs = forward(*args, **kwargs)
        if low_res_masks is not None:
            outputs.pred_masks = low_res_masks.expand_as(outputs.pred_masks).clone()
            outputs.iou_scores = iou_scores.expand_as(outputs.iou_scores).clone()
        return outputs

    monkeypatch.setattr(teacher.segmenter, "forward", recorded)
    return calls


def test_prompt_and_class_tokens(tiny_parts):
    prompt, spans = grounding_prompt(("Person", " traffic light", "car"))
    assert prompt == "person. traffic light. car."
    assert [prompt[start:end] for start, end in spans] == ["person", "traffic light", "car"]
    teacher = teacher_of(tiny_parts)
    positions = token_positions(teacher)
    assert teacher.class_tokens.shape == (3, teacher.text_inputs["input_ids"].shape[1])
    assert teacher.class_tokens.sum(dim=1).tolist() == [1, 2, 1]  # "traffic light" is two tokens
    for class_index, words in enumerate((["person"], ["traffic", "light"], ["car"])):
        assert sorted(teacher.class_tokens[class_index].nonzero().flatten().tolist()) == [positions[w] for w in words]
    special = [positions["[CLS]"], positions["[SEP]"]]
    assert not bool(teacher.class_tokens[:, special].any())


def test_class_token_map_refuses_a_class_without_tokens():
    with pytest.raises(ConfigError, match="no token"):
        class_token_map(torch.tensor([[0, 0], [0, 3], [3, 4], [0, 0]]), [(0, 3), (5, 8)])


@pytest.mark.parametrize("names, message", [((), "at least one"), (("car", "Car"), "more than once"),
                                            (("car", "st. bus"), "without '.'"), (("car", " "), "non-empty")])
def test_bad_class_names(names, message):
    with pytest.raises(ConfigError, match=message):
        grounding_prompt(names)


def test_select_detections_on_hand_made_logits():
    """Tokens: [CLS] person . traffic light . car . [SEP] (T = 9), padded to L = 12 with -inf."""
    class_tokens = torch.zeros(3, 9, dtype=torch.bool)
    class_tokens[0, 1] = class_tokens[1, 3] = class_tokens[1, 4] = class_tokens[2, 6] = True
    logits = torch.full((5, 12), -8.0)
    logits[:, 9:] = float("-inf")
    logits[0, 6] = 2.0  # car, box score sigmoid(2) = 0.88
    logits[1, 7] = 3.0  # only the dot after "car": a phrase of no class, dropped
    logits[2, 1] = -1.5  # person at 0.18: under box_threshold 0.3, dropped
    logits[3, 4], logits[3, 1] = 1.0, -0.5  # light (0.73) beats person (0.38): traffic light
    logits[4, 0], logits[4, 1] = 4.0, -1.0  # box score from [CLS] (0.98), person at 0.27 > 0.25: kept, class 0
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2],
                          [0.1, 0.9, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]])
    kept = select_detections(logits, boxes, class_tokens, (HEIGHT, WIDTH), box_threshold=0.3, text_threshold=0.25,
                             max_instances=10)
    assert kept.classes.tolist() == [0, 2, 1] and kept.classes.dtype == torch.int64
    expected_scores = torch.sigmoid(torch.tensor([4.0, 2.0, 1.0]))
    assert torch.allclose(kept.scores, expected_scores) and kept.scores.dtype == torch.float32
    assert torch.allclose(kept.boxes, torch.tensor([[0.0, 0.0, 64.0, 48.0], [16.0, 12.0, 48.0, 36.0],
                                                    [0.0, 33.6, 19.2, 48.0]]))  # the last clamped to the image
    top = select_detections(logits, boxes, class_tokens, (HEIGHT, WIDTH), box_threshold=0.3, text_threshold=0.25,
                            max_instances=2)
    assert top.classes.tolist() == [0, 2]
    stricter = select_detections(logits, boxes, class_tokens, (HEIGHT, WIDTH), box_threshold=0.3,
                                 text_threshold=0.3, max_instances=10)
    assert stricter.classes.tolist() == [2, 1]  # query 4's phrase no longer touches "person"


def test_pseudo_labels_of_the_tiny_models(tiny_parts):
    teacher = teacher_of(tiny_parts, box_threshold=0.0, text_threshold=0.0, max_instances=4)
    labels = teacher.pseudo_label(images())
    assert len(labels) == 2
    assert sum(len(label.classes) for label in labels) > 0
    for label in labels:
        count = len(label.classes)
        assert count <= 4
        assert label.classes.dtype == torch.int64 and label.classes.shape == (count,)
        assert label.masks.dtype == torch.bool and label.masks.shape == (count, HEIGHT, WIDTH)
        assert label.scores.dtype == torch.float32 and label.scores.shape == (count,)
        assert bool(((label.classes >= 0) & (label.classes < len(CLASSES))).all())
        assert bool(((label.scores >= 0) & (label.scores <= 1)).all())
        assert torch.equal(label.scores, label.scores.sort(descending=True).values)
        assert bool(label.masks.flatten(1).any(dim=1).all())  # no empty mask survives
    again = teacher.pseudo_label(images())
    assert all(torch.equal(a.masks, b.masks) and torch.equal(a.scores, b.scores) for a, b in zip(labels, again))


def known_detection(teacher: GroundedSAMTeacher) -> tuple[torch.Tensor, torch.Tensor]:
    """Query 3 finds a "car" (logit 1.5) at (cx, cy, w, h) = (0.5, 0.5, 0.5, 0.5); the rest see nothing."""
    logits = torch.full((NUM_QUERIES, MAX_TEXT_LEN), -8.0)
    logits[3, token_positions(teacher)["car"]] = 1.5
    boxes = torch.full((NUM_QUERIES, 4), 0.3)
    boxes[3] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    return logits, boxes


def test_sam_is_prompted_with_the_detected_box(tiny_parts, monkeypatch):
    teacher = teacher_of(tiny_parts, multimask_output=True)
    force_detector(monkeypatch, teacher, *known_detection(teacher))
    # Three candidate masks: SAM's IoU head prefers the second, the left half of the image.
    low_res = torch.full((3, SAM_MASK, SAM_MASK), -5.0)
    low_res[0, :2] = 5.0
    low_res[1, :, : SAM_MASK // 2] = 5.0
    calls = record_segmenter(monkeypatch, teacher, low_res, torch.tensor([0.2, 0.9, 0.4]))
    labels = teacher.pseudo_label(images())
    # One SAM call per image, with the box (16, 12, 48, 36) in pixels scaled to SAM's 64 x 64 input.
    assert len(calls) == 2
    for boxes in calls:
        assert torch.allclose(boxes, torch.tensor([[[16.0, 16.0, 48.0, 48.0]]]))
    left_half = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    left_half[:, : WIDTH // 2] = True
    for label in labels:
        assert label.classes.tolist() == [2]
        assert torch.allclose(label.scores, torch.sigmoid(torch.tensor([1.5])))
        assert label.masks.shape == (1, HEIGHT, WIDTH) and torch.equal(label.masks[0], left_half)


def test_single_mask_output_and_empty_masks_dropped(tiny_parts, monkeypatch):
    teacher = teacher_of(tiny_parts)
    force_detector(monkeypatch, teacher, *known_detection(teacher))
    calls = record_segmenter(monkeypatch, teacher, torch.full((1, SAM_MASK, SAM_MASK), -5.0), torch.tensor([0.9]))
    labels = teacher.pseudo_label(images(1))
    assert len(calls) == 1
    assert len(labels) == 1 and labels[0].masks.shape == (0, HEIGHT, WIDTH)


def test_no_boxes_give_empty_instances_and_no_sam_call(tiny_parts, monkeypatch):
    teacher = teacher_of(tiny_parts)
    logits, boxes = known_detection(teacher)
    force_detector(monkeypatch, teacher, torch.full_like(logits, -8.0), boxes)
    calls = record_segmenter(monkeypatch, teacher)
    labels = teacher.pseudo_label(images(3))
    assert calls == []
    for label in labels:
        assert label.classes.shape == (0,) and label.classes.dtype == torch.int64
        assert label.masks.shape == (0, HEIGHT, WIDTH) and label.masks.dtype == torch.bool
        assert label.scores.shape == (0,) and label.scores.dtype == torch.float32


def test_above_keeps_scores_at_or_over_the_threshold():
    masks = torch.zeros(3, 4, 5, dtype=torch.bool)
    masks[1, 0, 0] = True
    instances = PseudoInstances(torch.tensor([0, 2, 1]), masks, torch.tensor([0.75, 0.5, 0.25]))
    kept = instances.above(0.5)
    assert kept.classes.tolist() == [0, 2] and kept.scores.tolist() == [0.75, 0.5]
    assert torch.equal(kept.masks, masks[:2])
    assert instances.above(0.8).masks.shape == (0, 4, 5)


@pytest.mark.parametrize("options, message", [({"box_threshold": 1.5}, "box_threshold"),
                                              ({"text_threshold": -0.1}, "text_threshold"),
                                              ({"max_instances": 0}, "max_instances")])
def test_bad_settings(tiny_parts, options, message):
    with pytest.raises(ConfigError, match=message):
        teacher_of(tiny_parts, **options)


def test_a_prompt_longer_than_the_detector_reads(tiny_parts):
    with pytest.raises(ConfigError, match="fewer or shorter class names"):
        GroundedSAMTeacher(*tiny_parts, class_names=[f"car {'person ' * index}" for index in range(8)])


def test_images_must_be_rgb(tiny_parts):
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        teacher_of(tiny_parts).pseudo_label(torch.zeros(3, HEIGHT, WIDTH))


def test_builder_loads_local_folders_and_gives_the_same_labels(tiny_parts, tmp_path):
    detector, detector_processor, segmenter, segmenter_processor = tiny_parts
    for model, processor, folder in ((detector, detector_processor, "dino"), (segmenter, segmenter_processor, "sam")):
        model.save_pretrained(tmp_path / folder)
        processor.save_pretrained(tmp_path / folder)
    loaded = grounded_sam_teacher(str(tmp_path / "dino"), str(tmp_path / "sam"), class_names=CLASSES,
                                  local_files_only=True, box_threshold=0.0, text_threshold=0.0, max_instances=4)
    built = teacher_of(tiny_parts, box_threshold=0.0, text_threshold=0.0, max_instances=4)
    for a, b in zip(loaded.pseudo_label(images()), built.pseudo_label(images())):
        assert torch.equal(a.classes, b.classes) and torch.equal(a.masks, b.masks)
        assert torch.allclose(a.scores, b.scores)


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'gkd-deploy\[grounded-sam\]'"):
        grounded_sam_teacher()


def test_old_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="4.30.0"))
    with pytest.raises(ModelError, match=r"transformers 4\.30\.0 has no .*transformers 5 or newer"):
        grounded_sam_teacher()


def test_weights_not_cached_offline(monkeypatch):
    pytest.importorskip("transformers")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set: run once with internet access"):
        grounded_sam_teacher("gkd-test/no-such-detector")
    with pytest.raises(WeightsError, match="cannot load the Grounding-DINO detector 'gkd-test/no-such-detector'"):
        grounded_sam_teacher("gkd-test/no-such-detector", local_files_only=True)


def test_importing_the_package_does_not_import_transformers():
    probe = ("import sys, gkd_deploy.instance, gkd_deploy.instance.grounded_sam; "
             "sys.exit('transformers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
