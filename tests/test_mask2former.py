"""Mask2Former decoder: matching, loss against a reference, shapes, masked attention, ONNX, training."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from gkd_deploy.models.decoders import DECODERS
from gkd_deploy.errors import ConfigError
from gkd_deploy.models.decoders.mask2former import EDGE_PRESET, Mask2FormerDecoder, Mask2FormerOptions, semantic_scores
from gkd_deploy.models.decoders.mask2former.criterion import SetCriterion
from gkd_deploy.models.decoders.mask2former.deformable_attention import MultiScaleDeformableAttention
from gkd_deploy.models.decoders.mask2former.matcher import hungarian_match, pairwise_dice, pairwise_sigmoid_ce
from gkd_deploy.models.decoders.mask2former.point_sampling import PointSampler, point_sample
from gkd_deploy.models.decoders.mask2former.targets import Targets, semantic_targets
from gkd_deploy.models.decoders.mask2former.transformer_decoder import attention_mask
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.training.stages import TaskObjective
from tests.fixtures_sampling import PixelCentres

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

ENCODER_STRIDE = 16
SMALL = {
    "hidden_dim": 32, "num_queries": 6, "dec_layers": 3, "pixel_layers": 1, "num_heads": 4, "num_points_deform": 2,
    "dim_feedforward": 64, "pixel_ffn": 64, "num_points": 256, "groups": 4,
}
WEIGHTS = {"class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0}


def small_decoder(in_channels: int = 24, num_classes: int = 5, **options) -> Mask2FormerDecoder:
    return Mask2FormerDecoder(in_channels, 4, num_classes, Mask2FormerOptions(**{**SMALL, **options}))


def encoder_maps(batch: int, height: int, width: int, channels: int = 24) -> list[torch.Tensor]:
    """Four stand-in block outputs of a stride-16 encoder for a (height, width) input."""
    h, w = height // ENCODER_STRIDE, width // ENCODER_STRIDE
    return [torch.randn(batch, channels, h, w) for _ in range(4)]


# --- point sampling, targets, matching ----------------------------------------------------------

def test_point_sample_reads_pixel_centres_and_keeps_edges():
    maps = torch.randn(2, 3, 4, 5)
    centres = PixelCentres(4, 5).uniform(2, maps.device)
    torch.testing.assert_close(point_sample(maps, centres), maps.flatten(2))
    # Border padding: the corners of the map read the corner pixels, not a fade towards 0.
    corners = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]).expand(2, -1, -1)
    torch.testing.assert_close(point_sample(maps, corners), torch.stack((maps[..., 0, 0], maps[..., -1, -1]), dim=-1))


def test_importance_sampler_prefers_uncertain_points():
    sampler = PointSampler(num_points=200, oversample_ratio=4.0, importance_sample_ratio=0.75)
    # Logits are 0 (most uncertain) in the left quarter, 10 elsewhere (between the two, in
    # x = 7.5/32 .. 8.5/32, the interpolated |logit| grows from 0).
    logits = torch.full((3, 1, 8, 32), 10.0)
    logits[..., :8] = 0.0
    points = sampler.importance(logits)
    assert points.shape == (3, 200, 2)
    assert ((points >= 0) & (points <= 1)).all()
    # Of 800 candidates about 187 fall where the logit is 0: the 150 importance points are all
    # there; the 50 uniform ones go anywhere.
    assert (points[:, :150, 0] <= 7.5 / 32).all()
    assert (points[:, 150:, 0] > 0.5).any()


def test_semantic_targets_one_mask_per_present_class_ignore_is_background():
    labels = torch.tensor([[[0, 0, 3, 255], [3, 3, 255, 255]], [[255, 255, 255, 255], [255, 255, 255, 255]]])
    first, empty = semantic_targets(labels, num_classes=4)
    assert first.classes.tolist() == [0, 3]
    torch.testing.assert_close(first.masks, torch.tensor([[[1.0, 1, 0, 0], [0, 0, 0, 0]],
                                                          [[0.0, 0, 1, 0], [1, 1, 0, 0]]]))
    assert len(empty) == 0 and empty.masks.shape == (0, 2, 4)
    with pytest.raises(ValueError, match="4 classes"):
        semantic_targets(torch.tensor([[[0, 4]]]), num_classes=4)


def test_pairwise_costs_match_per_pair_formulas():
    logits, targets = torch.randn(4, 50), (torch.rand(3, 50) > 0.5).float()
    bce, dice = pairwise_sigmoid_ce(logits, targets), pairwise_dice(logits, targets)
    for q in range(4):
        for t in range(3):
            expected_bce = F.binary_cross_entropy_with_logits(logits[q], targets[t])
            p = logits[q].sigmoid()
            expected_dice = 1 - (2 * (p * targets[t]).sum() + 1) / (p.sum() + targets[t].sum() + 1)
            torch.testing.assert_close(bce[q, t], expected_bce)
            torch.testing.assert_close(dice[q, t], expected_dice)


def test_matcher_finds_shuffled_copies_of_the_targets():
    num_queries, num_classes = 7, 5
    targets, logits, masks, placements = [], [], [], []
    for count in (3, 2):
        # Targets from a blocky label map (4x4 blocks of 16x16), so that between-pixel points,
        # interpolated on both sides, still find each copy far closer to its target than to any other.
        classes = torch.randperm(num_classes)[:count].sort().values
        blocks = torch.randint(0, count, (4, 4))
        blocks.view(-1)[:count] = torch.arange(count)  # every target present
        blocks = blocks.repeat_interleave(4, 0).repeat_interleave(4, 1)
        target_masks = (blocks == torch.arange(count)[:, None, None]).float()
        targets.append(Targets(classes, target_masks))
        # Query placement[t] is an exact (confident) copy of target t; the other queries are noise.
        placement = torch.randperm(num_queries)[:count]
        image_masks = torch.randn(num_queries, 16, 16)
        image_logits = torch.randn(num_queries, num_classes + 1)
        image_masks[placement] = 20.0 * (2.0 * target_masks - 1.0)
        image_logits[placement] = 10.0 * F.one_hot(classes, num_classes + 1).float()
        logits.append(image_logits), masks.append(image_masks), placements.append(placement)
    matches = hungarian_match(torch.stack(logits), torch.stack(masks), targets, PointSampler(256, 3.0, 0.75), **WEIGHTS)
    for (queries, chosen), placement in zip(matches, placements):
        assert queries.dtype == chosen.dtype == torch.int64
        assert sorted(chosen.tolist()) == list(range(len(placement)))
        assert dict(zip(chosen.tolist(), queries.tolist())) == dict(enumerate(placement.tolist()))


def test_matcher_takes_the_global_optimum_not_the_greedy_choice():
    # Class cost only. Query 0 is the best for both classes; greedy would give it class 0 (0.9)
    # and leave class 1 to query 1 (0.1): total 1.0. The optimum gives query 0 class 1 (0.8)
    # and query 1 class 0 (0.85): total 1.65.
    probs = torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.1, 0.05], [0.05, 0.05, 1.0]]).clamp(min=1e-4)
    logits = probs.log()[None]  # softmax of log-probabilities is the normalised probabilities
    targets = [Targets(torch.tensor([0, 1]), torch.zeros(2, 4, 4))]
    [(queries, chosen)] = hungarian_match(logits, torch.zeros(1, 3, 4, 4), targets, PointSampler(16, 1.0, 0.0),
                                          class_weight=1.0, mask_weight=0.0, dice_weight=0.0)
    assert dict(zip(chosen.tolist(), queries.tolist())) == {0: 1, 1: 0}


# --- the loss against a reference -----------------------------------------------------------------

def reference_loss(outputs, coarse_labels, num_classes, no_object_weight=0.1):
    """Mask2Former's loss written out per image, query and target on (h, w) predictions whose
    labels are `coarse_labels` (B, h, w): ignore (255) is background of every mask."""
    class_weights = torch.ones(num_classes + 1)
    class_weights[-1] = no_object_weight
    images = []
    for label in coarse_labels:
        classes = [c for c in range(num_classes) if (label == c).any()]
        images.append((classes, [(label == c).float().flatten() for c in classes]))
    num_masks = max(1, sum(len(classes) for classes, _ in images))

    def one_prediction(logits, masks):
        ce_numerator = ce_denominator = mask_sum = dice_sum = 0.0
        for b, (classes, target_masks) in enumerate(images):
            probs, log_probs = logits[b].softmax(-1), logits[b].log_softmax(-1)
            flat = masks[b].flatten(1)
            cost = np.zeros((flat.shape[0], len(classes)))
            for q in range(flat.shape[0]):
                for t, (c, target) in enumerate(zip(classes, target_masks)):
                    p = flat[q].sigmoid()
                    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
                    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
                    cost[q, t] = float(-2.0 * probs[q, c] + 5.0 * bce + 5.0 * dice)
            rows, cols = linear_sum_assignment(cost)
            assigned = dict(zip(rows.tolist(), cols.tolist()))
            for q in range(flat.shape[0]):
                wanted = classes[assigned[q]] if q in assigned else num_classes
                ce_numerator = ce_numerator - class_weights[wanted] * log_probs[q, wanted]
                ce_denominator = ce_denominator + class_weights[wanted]
            for q, t in assigned.items():
                p, target = flat[q].sigmoid(), target_masks[t]
                mask_sum = mask_sum - (target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
                dice_sum = dice_sum + 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return ce_numerator / ce_denominator, mask_sum / num_masks, dice_sum / num_masks

    final = one_prediction(outputs["pred_logits"], outputs["pred_masks"])
    total = sum(2.0 * ce + 5.0 * mask + 5.0 * dice for ce, mask, dice in
                [final] + [one_prediction(a["pred_logits"], a["pred_masks"]) for a in outputs["aux_outputs"]])
    return total, final


def test_loss_matches_a_per_pixel_reference():
    num_classes, batch, queries, h, w = 3, 2, 5, 6, 8
    coarse = torch.randint(0, num_classes, (batch, h, w))
    coarse[0, :2, :3] = 255  # ignored pixels
    coarse[1][coarse[1] == 2] = 0  # image 1 has only classes 0 and 1
    # Labels at 4x the prediction size, constant on 4x4 blocks: a pixel-centre point of the
    # prediction reads exactly its block's label.
    labels = coarse.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)

    def prediction():
        return {"pred_logits": torch.randn(batch, queries, num_classes + 1) * 2,
                "pred_masks": torch.randn(batch, queries, h, w) * 3}

    outputs = {**prediction(), "aux_outputs": [prediction(), prediction()]}
    criterion = SetCriterion(num_classes, PixelCentres(h, w), no_object_weight=0.1, **WEIGHTS)
    losses = criterion(outputs, labels)
    total, (ce, mask, dice) = reference_loss(outputs, coarse, num_classes)
    torch.testing.assert_close(losses["loss"], total.float(), rtol=1e-5, atol=1e-5)
    for name, expected in (("ce", ce), ("mask", mask), ("dice", dice)):
        torch.testing.assert_close(losses[name], expected.float(), rtol=1e-5, atol=1e-5)
        assert not losses[name].requires_grad


def test_loss_with_only_ignored_pixels_is_finite_and_differentiable():
    decoder = small_decoder()
    outputs = decoder.forward_train(encoder_maps(2, 32, 32))
    losses = decoder.loss(outputs, torch.full((2, 32, 32), 255))
    assert float(losses["mask"]) == float(losses["dice"]) == 0.0
    losses["loss"].backward()  # only "no object" for every query: the class head still learns
    assert decoder.transformer.head.class_embed.weight.grad.abs().sum() > 0


# --- decoder shapes, gradients, masked attention ------------------------------------------------------

@pytest.mark.parametrize("batch,height,width", [(1, 64, 64), (2, 64, 128), (2, 96, 96)])
def test_shapes_of_forward_and_forward_train(batch, height, width):
    decoder = small_decoder().eval()
    maps = encoder_maps(batch, height, width)
    with torch.no_grad():
        scores = decoder(maps)
        outputs = decoder.forward_train(maps)
    h, w = height // 4, width // 4
    assert scores.shape == (batch, 5, h, w) and torch.isfinite(scores).all()
    assert outputs["pred_logits"].shape == (batch, 6, 6)  # Q = 6, K + 1 = 6
    assert outputs["pred_masks"].shape == (batch, 6, h, w)
    assert len(outputs["aux_outputs"]) == SMALL["dec_layers"]  # before the first layer + all but the last
    for aux in outputs["aux_outputs"]:
        assert aux["pred_logits"].shape == (batch, 6, 6) and aux["pred_masks"].shape == (batch, 6, h, w)
    # Inference scores are the final prediction's class probabilities (no "no object") times the masks.
    expected = torch.einsum("bqc,bqhw->bchw", outputs["pred_logits"].softmax(-1)[..., :-1],
                            outputs["pred_masks"].sigmoid())
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(semantic_scores(outputs["pred_logits"], outputs["pred_masks"]), expected)


def test_dropout_is_off_as_built_draws_nothing_then_and_acts_only_in_training_at_its_set_rate():
    torch.manual_seed(0)
    decoder = small_decoder().train()
    with torch.no_grad():
        mask_features, levels = decoder.pixel_decoder(encoder_maps(2, 64, 64))
    transformer = decoder.transformer
    state = torch.get_rng_state()
    plain = transformer(mask_features, levels)[-1][0]
    assert torch.equal(torch.get_rng_state(), state)  # rate 0: no draw, so seeded runs are unchanged
    transformer.set_dropout(0.1)
    layer = transformer.layers[0]
    assert layer.dropout.p == 0.1 and layer.cross_attention.dropout == layer.self_attention.dropout == 0.1
    torch.manual_seed(1)
    first = transformer(mask_features, levels)[-1][0]
    torch.manual_seed(1)
    again = transformer(mask_features, levels)[-1][0]
    torch.manual_seed(2)
    other = transformer(mask_features, levels)[-1][0]
    assert torch.equal(first, again) and not torch.allclose(first, other) and not torch.allclose(first, plain)
    transformer.eval()
    torch.testing.assert_close(transformer(mask_features, levels)[-1][0], plain, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        transformer.set_dropout(1.0)


def test_gradients_reach_every_decoder_parameter():
    decoder = small_decoder()
    # Deformable DETR starts the offset and attention-weight predictors at zero weights, so at
    # step 0 nothing flows back into the queries of the deformable encoder (and its level
    # embedding) until those weights have moved; give them that first move.
    for module in decoder.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            nn.init.normal_(module.sampling_offsets.weight, std=0.01)
            nn.init.normal_(module.attention_weights.weight, std=0.01)
    maps = [m.requires_grad_() for m in encoder_maps(2, 64, 64)]
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[:, :8] = 255
    losses = decoder.loss(decoder.forward_train(maps), labels)
    assert set(losses) == {"loss", "ce", "mask", "dice"}
    losses["loss"].backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_attention_mask_lets_a_query_with_an_empty_mask_attend_everywhere():
    logits = torch.randn(2, 3, 8, 8)
    logits[0, 1] = -5.0  # empty everywhere: all keys would be masked
    logits[1, 2] = 5.0  # full everywhere: nothing masked
    mask = attention_mask(logits, (4, 4), num_heads=2)
    assert mask.shape == (4, 3, 16) and mask.dtype == torch.bool
    mask = mask.unflatten(0, (2, 2))  # (B, heads, Q, S)
    assert not mask[0, :, 1].any() and not mask[1, :, 2].any()
    expected = F.interpolate(logits, size=(4, 4), mode="bilinear", align_corners=False).flatten(2).sigmoid() < 0.5
    assert torch.equal(mask[0, 0, 0], expected[0, 0]) and torch.equal(mask[1, 1, 1], expected[1, 1])


def test_a_query_with_an_empty_previous_mask_gives_finite_outputs(monkeypatch):
    decoder = small_decoder().eval()
    head = decoder.transformer.head
    original_head = head.forward

    def empty_first_query(queries, mask_features):
        logits, masks = original_head(queries, mask_features)
        masks = masks.clone()
        masks[:, 0] = -50.0  # query 0's mask is empty at every layer
        return logits, masks

    monkeypatch.setattr(head, "forward", empty_first_query)
    # Record the attention masks the layers get. (PyTorch's own attention happens to return 0
    # for a fully masked row rather than NaN, ONNX Runtime's softmax does not: so check the mask.)
    seen = []
    for layer in decoder.transformer.layers:
        def recording(queries, query_pos, memory, memory_pos, mask, _forward=layer.forward):
            seen.append(mask)
            return _forward(queries, query_pos, memory, memory_pos, mask)
        monkeypatch.setattr(layer, "forward", recording)
    maps = encoder_maps(2, 64, 64)
    with torch.no_grad():
        scores = decoder(maps)
    assert len(seen) == SMALL["dec_layers"]
    for mask in seen:
        per_image = mask.unflatten(0, (2, SMALL["num_heads"]))  # (B, heads, Q, S)
        assert not per_image[:, :, 0].any()  # the empty query attends everywhere
        assert not per_image.all(dim=-1).any()  # and no query has every key masked
    outputs = decoder.forward_train(maps)
    assert torch.isfinite(scores).all()
    assert all(torch.isfinite(a["pred_logits"]).all() for a in [outputs, *outputs["aux_outputs"]])
    assert torch.isfinite(decoder.loss(outputs, torch.randint(0, 5, (2, 64, 64)))["loss"])


def test_deformable_attention_matches_a_per_point_reference():
    dim, levels, heads, points = 8, 2, 2, 3
    attention = MultiScaleDeformableAttention(dim, levels, heads, points)
    with torch.no_grad():  # move away from the structured initialisation; some points fall off the map
        for parameter in attention.parameters():
            parameter.normal_(std=0.5)
    shapes = [(3, 4), (2, 5)]
    value = torch.randn(2, sum(h * w for h, w in shapes), dim)
    query = torch.randn(2, 5, dim)
    reference = torch.rand(5, 2)
    got = attention(query, reference, value, shapes)

    def bilinear(image, x, y):  # image (C, H, W), (x, y) in [0, 1], zeros outside, align_corners=False
        height, width = image.shape[-2:]
        px, py = x * width - 0.5, y * height - 0.5
        x0, y0 = math.floor(px), math.floor(py)
        out = torch.zeros(image.shape[0])
        for xi, yi, weight in ((x0, y0, (x0 + 1 - px) * (y0 + 1 - py)), (x0 + 1, y0, (px - x0) * (y0 + 1 - py)),
                               (x0, y0 + 1, (x0 + 1 - px) * (py - y0)), (x0 + 1, y0 + 1, (px - x0) * (py - y0))):
            if 0 <= xi < width and 0 <= yi < height:
                out = out + weight * image[:, yi, xi]
        return out

    with torch.no_grad():
        projected = attention.value_proj(value)
        starts = np.cumsum([0] + [h * w for h, w in shapes])
        offsets = attention.sampling_offsets(query).reshape(2, 5, heads, levels, points, 2)
        weights = attention.attention_weights(query).reshape(2, 5, heads, levels * points).softmax(-1)
        weights = weights.reshape(2, 5, heads, levels, points)
        expected = torch.zeros(2, 5, dim)
        head_dim = dim // heads
        for b in range(2):
            for q in range(5):
                for m in range(heads):
                    for lvl, (h, w) in enumerate(shapes):
                        image = projected[b, starts[lvl]:starts[lvl + 1], m * head_dim:(m + 1) * head_dim]
                        image = image.T.reshape(head_dim, h, w)
                        for p in range(points):
                            x = float(reference[q, 0] + offsets[b, q, m, lvl, p, 0] / w)
                            y = float(reference[q, 1] + offsets[b, q, m, lvl, p, 1] / h)
                            sample = bilinear(image, x, y)
                            expected[b, q, m * head_dim:(m + 1) * head_dim] += weights[b, q, m, lvl, p] * sample
        expected = attention.output_proj(expected)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# --- configuration -------------------------------------------------------------------------------------

def test_default_configuration_is_the_papers():
    decoder = Mask2FormerDecoder(384, 4, 19)
    pixel, transformer = decoder.pixel_decoder, decoder.transformer
    assert len(pixel.layers) == 6 and len(transformer.layers) == 9
    assert transformer.query_feat.weight.shape == (100, 256) and transformer.query_embed.weight.shape == (100, 256)
    attention = pixel.layers[0].attention
    assert (attention.num_heads, attention.num_levels, attention.num_points) == (8, 3, 4)
    assert pixel.layers[0].linear1.out_features == 1024 and transformer.layers[0].linear1.out_features == 2048
    assert transformer.layers[0].cross_attention.num_heads == 8
    assert all(m.num_groups == 32 for m in decoder.modules() if isinstance(m, nn.GroupNorm))
    assert transformer.head.class_embed.out_features == 20
    criterion = decoder.criterion
    assert criterion.sampler.num_points == 12544 and criterion.sampler.num_candidates == 3 * 12544
    assert criterion.sampler.num_uncertain == int(0.75 * 12544)
    assert (criterion.class_weight, criterion.mask_weight, criterion.dice_weight) == (2.0, 5.0, 5.0)
    assert criterion.class_weights[-1] == pytest.approx(0.1) and (criterion.class_weights[:-1] == 1).all()
    assert "criterion.class_weights" not in decoder.state_dict()  # derived, not a checkpoint entry
    count = sum(p.numel() for p in decoder.parameters())
    edge = Mask2FormerDecoder(384, 4, 19, Mask2FormerOptions(**EDGE_PRESET))
    edge_count = sum(p.numel() for p in edge.parameters())
    print(f"Mask2Former (ViT-S, 19 classes) parameters: default {count:,}, edge {edge_count:,}")
    assert edge_count < count / 5


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="'hidden_dim' \\(36\\) must be divisible by 'num_heads'"):
        Mask2FormerOptions(hidden_dim=36, num_heads=8, groups=4)
    with pytest.raises(ConfigError, match="GroupNorm groups"):
        Mask2FormerOptions(hidden_dim=48)
    with pytest.raises(ValueError, match="one per pyramid level"):
        Mask2FormerDecoder(64, 3, 19)
    with pytest.raises(ConfigError, match="'num_queries' must be a positive integer"):
        Mask2FormerOptions(num_queries=0)
    with pytest.raises(ConfigError, match="importance_sample_ratio"):
        Mask2FormerOptions(importance_sample_ratio=1.5)


# --- ONNX, through the segmenter -------------------------------------------------------------------------

# The legacy (TorchScript) exporter warns that it is deprecated; the tracer warns where sizes
# become constants (the spatial size is fixed at export, only the batch axis is free).
_EXPORT_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning",
                                              "ignore::UserWarning")


@_EXPORT_WARNINGS
def test_segmenter_with_mask2former_exports_to_onnx(monkeypatch, tmp_path):
    monkeypatch.setitem(DECODERS, "mask2former", Mask2FormerDecoder)
    config = SegmenterConfig("tiny-student", decoder="mask2former", img_size=64, decoder_options=dict(SMALL))
    model = build_segmenter(config).eval()
    assert isinstance(model.decoder, Mask2FormerDecoder)
    path = tmp_path / "segmenter.onnx"
    torch.onnx.export(
        model, (torch.rand(2, 3, 64, 64) * 255,), str(path), opset_version=17, dynamo=False,
        input_names=["images"], output_names=["scores"],
        dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
    )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert "GridSample" in {node.op_type for node in graph.graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        images = torch.rand(batch, 3, 64, 64) * 255
        with torch.no_grad():
            expected = model(images).numpy()
        (got,) = session.run(None, {"images": images.numpy()})
        assert got.shape == expected.shape == (batch, 19, 64, 64)
        assert np.abs(got - expected).max() < 1e-4
        assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999


def test_gather_sampling_is_grid_samples_bilinear_rule():
    from gkd_deploy.models.decoders.mask2former.deformable_attention import bilinear_sample

    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 5, 7, 9, generator=generator)
    grid = torch.rand(3, 11, 4, 2, generator=generator) * 2.6 - 1.3  # a third of the points outside the image
    grid[0, 0, 0] = torch.tensor([-1.0, -1.0])  # the outer corner, exactly
    grid[0, 0, 1] = torch.tensor([1.0, 1.0])
    grid[0, 0, 2] = torch.tensor([-1 + 1 / 9, -1 + 1 / 7])  # the centre of the first pixel
    want = torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(bilinear_sample(image, grid), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bilinear_sample(image, grid)[0, :, 0, 2], image[0, :, 0, 0], atol=1e-5, rtol=1e-5)


@_EXPORT_WARNINGS
def test_the_exporter_writes_deformable_attention_with_gathers_or_gridsample(monkeypatch, tmp_path):
    from gkd_deploy.exporters.check import check_parity
    from gkd_deploy.exporters.onnx_export import export_onnx

    monkeypatch.setitem(DECODERS, "mask2former", Mask2FormerDecoder)
    config = SegmenterConfig("tiny-student", decoder="mask2former", img_size=64, decoder_options=dict(SMALL))
    model = build_segmenter(config).eval()
    images = torch.rand(3, 3, 64, 64) * 255
    for sampling, op in (("gather", "GatherElements"), ("grid_sample", "GridSample")):
        path = export_onnx(model, tmp_path / f"m2f-{sampling}.onnx", sampling=sampling)
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert op in ops and ("GridSample" in ops) == (sampling == "grid_sample")  # gathers: TensorRT-safe
        report = check_parity(path, model, images)
        assert report.max_abs_diff < 1e-4 and report.pixel_agreement > 99.9, sampling
    assert all(module.sampling == "grid_sample" for module in model.modules() if hasattr(module, "sampling"))


# --- training ----------------------------------------------------------------------------------------------

def test_frozen_encoder_training_lowers_the_loss(monkeypatch):
    monkeypatch.setitem(DECODERS, "mask2former", Mask2FormerDecoder)
    config = SegmenterConfig("tiny-student", decoder="mask2former", img_size=64,
                             decoder_options={**SMALL, "num_queries": 8})
    task = TaskObjective(build_segmenter(config), train_encoder=False).train()
    # Left half dark, right half bright, labelled class 0 and class 1; brightness varies by image.
    images = torch.zeros(4, 3, 64, 64)
    for i in range(4):
        images[i, :, :, :32] = 30.0 + 10 * i
        images[i, :, :, 32:] = 200.0 + 10 * i
    labels = torch.zeros(4, 64, 64, dtype=torch.int64)
    labels[:, :, 32:] = 1
    optimizer = torch.optim.AdamW(task.segmenter.decoder.parameters(), lr=1e-3, weight_decay=0.05)
    history = []
    for _ in range(30):
        losses = task(images, labels, BatchRandom.single(4))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss"].detach()))
    assert all(math.isfinite(value) for value in history)
    first, last = np.mean(history[:3]), np.mean(history[-3:])
    print(f"Mask2Former training loss: {first:.3f} -> {last:.3f}")
    assert last < 0.5 * first
    assert not any(p.grad is not None for p in task.segmenter.encoder.parameters())
    # The trained decoder separates the halves.
    task.segmenter.eval()
    with torch.no_grad():
        predicted = task.segmenter(images).argmax(1)
    assert (predicted == labels).float().mean() > 0.9
