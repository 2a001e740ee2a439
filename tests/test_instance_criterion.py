"""Instance set loss: Hungarian matching of queries to instances, the loss of perfect and swapped
predictions, images without instances, deep supervision, bad targets."""

from __future__ import annotations

import pytest
import torch

from gkd_deploy.errors import ConfigError, DataError
from gkd_deploy.instance import InstanceCriterion, instance_targets, match_instances
from tests.fixtures_sampling import PixelCentres, fit_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

NUM_CLASSES, NUM_QUERIES, SIZE = 4, 6, 16
CONFIDENT = 20.0  # logit magnitude of a sure prediction


def blob_masks() -> torch.Tensor:
    """Three disjoint rectangles on a 16 x 16 image: (3, 16, 16) bool."""
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[0, 1:7, 1:9] = True
    masks[1, 9:15, 2:6] = True
    masks[2, 4:14, 10:15] = True
    return masks


def predictions_for(classes: torch.Tensor, masks: torch.Tensor, queries: list[int]) -> tuple[torch.Tensor, ...]:
    """Class logits (1, Q, C+1) and mask logits (1, Q, H, W) that put instance t exactly at query
    queries[t]; every other query is a sure "no object" with an empty mask."""
    class_logits = torch.zeros(1, NUM_QUERIES, NUM_CLASSES + 1)
    class_logits[0, :, NUM_CLASSES] = CONFIDENT
    mask_logits = torch.full((1, NUM_QUERIES, SIZE, SIZE), -CONFIDENT)
    for instance, query in enumerate(queries):
        class_logits[0, query] = 0.0
        class_logits[0, query, classes[instance]] = CONFIDENT
        mask_logits[0, query] = CONFIDENT * (2.0 * masks[instance].float() - 1.0)
    return class_logits, mask_logits


def test_matching_recovers_a_known_permutation():
    classes, masks = torch.tensor([2, 0, 3]), blob_masks()
    permutation = [4, 1, 3]
    class_logits, mask_logits = predictions_for(classes, masks, permutation)
    mask_logits = mask_logits + 0.5 * torch.randn_like(mask_logits)  # not exact: matching must still find them
    [(queries, chosen)] = match_instances(class_logits, mask_logits, [(classes, masks)], num_points=512)
    assert dict(zip(chosen.tolist(), queries.tolist())) == {0: 4, 1: 1, 2: 3}


def test_matching_lets_the_class_decide_between_equal_masks():
    masks = blob_masks()[:1].expand(2, -1, -1)  # two instances with the same mask, different classes
    classes = torch.tensor([1, 3])
    class_logits, mask_logits = predictions_for(classes, masks, [5, 2])
    [(queries, chosen)] = match_instances(class_logits, mask_logits, [(classes, masks)])
    assert dict(zip(chosen.tolist(), queries.tolist())) == {0: 5, 1: 2}


def test_perfect_predictions_cost_almost_nothing_and_swapped_ones_much_more():
    classes, masks = torch.tensor([2, 0, 3]), blob_masks()
    criterion = InstanceCriterion(NUM_CLASSES, PixelCentres(SIZE, SIZE))
    class_logits, mask_logits = predictions_for(classes, masks, [4, 1, 3])
    perfect = criterion({"pred_logits": class_logits, "pred_masks": mask_logits}, [(classes, masks)])
    assert perfect["loss"].item() < 1e-3
    # Each query keeps its mask but says another instance's class: every matching is wrong somewhere.
    swapped_logits = class_logits.clone()
    swapped_logits[0, [4, 1, 3]] = class_logits[0, [1, 3, 4]]
    swapped = criterion({"pred_logits": swapped_logits, "pred_masks": mask_logits}, [(classes, masks)])
    assert swapped["loss"].item() > 1.0
    assert set(swapped) == {"loss", "ce", "mask", "dice"}


def test_images_without_instances_only_learn_no_object():
    criterion = InstanceCriterion(NUM_CLASSES, PixelCentres(8, 8))
    class_logits = torch.randn(2, NUM_QUERIES, NUM_CLASSES + 1, requires_grad=True)
    mask_logits = torch.randn(2, NUM_QUERIES, 8, 8, requires_grad=True)
    empty = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, 32, 32, dtype=torch.bool))
    losses = criterion({"pred_logits": class_logits, "pred_masks": mask_logits}, [empty, empty])
    assert losses["mask"].item() == losses["dice"].item() == 0.0
    targets = torch.full((2, NUM_QUERIES), NUM_CLASSES)
    expected = torch.nn.functional.cross_entropy(class_logits.transpose(1, 2), targets)  # one class: weights cancel
    torch.testing.assert_close(losses["ce"], expected.detach())
    losses["loss"].backward()
    assert class_logits.grad.abs().sum() > 0 and mask_logits.grad is not None


def test_one_empty_image_beside_one_with_instances():
    classes, masks = torch.tensor([2, 0, 3]), blob_masks()
    class_logits, mask_logits = predictions_for(classes, masks, [4, 1, 3])
    empty_logits, empty_masks = predictions_for(torch.zeros(0, dtype=torch.int64), masks[:0], [])
    outputs = {"pred_logits": torch.cat((class_logits, empty_logits)), "pred_masks": torch.cat((mask_logits,
                                                                                               empty_masks))}
    empty = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, SIZE, SIZE))
    losses = InstanceCriterion(NUM_CLASSES, PixelCentres(SIZE, SIZE))(outputs, [(classes, masks), empty])
    assert losses["loss"].item() < 1e-3


def test_deep_supervision_adds_each_auxiliary_prediction():
    classes, masks = torch.tensor([1, 2]), blob_masks()[:2]
    criterion = InstanceCriterion(NUM_CLASSES, PixelCentres(SIZE, SIZE))
    final = {"pred_logits": torch.randn(1, NUM_QUERIES, NUM_CLASSES + 1),
             "pred_masks": torch.randn(1, NUM_QUERIES, SIZE, SIZE)}
    aux = [{"pred_logits": torch.randn(1, NUM_QUERIES, NUM_CLASSES + 1),
            "pred_masks": torch.randn(1, NUM_QUERIES, SIZE, SIZE)} for _ in range(2)]
    alone = [criterion(prediction, [(classes, masks)])["loss"] for prediction in (final, *aux)]
    together = criterion({**final, "aux_outputs": aux}, [(classes, masks)])
    torch.testing.assert_close(together["loss"], sum(alone))
    torch.testing.assert_close(together["ce"], criterion(final, [(classes, masks)])["ce"])


def test_targets_at_input_resolution_meet_predictions_at_stride_four():
    classes, masks = torch.tensor([2, 0, 3]), blob_masks()
    class_logits, mask_logits = predictions_for(classes, masks, [0, 2, 5])
    large = masks.repeat_interleave(4, 1).repeat_interleave(4, 2)  # (3, 64, 64)
    [(queries, chosen)] = match_instances(class_logits, mask_logits, [(classes, large)])
    assert dict(zip(chosen.tolist(), queries.tolist())) == {0: 0, 1: 2, 2: 5}


def test_bad_targets_are_named():
    masks = blob_masks()
    with pytest.raises(DataError, match="image 1 .* classes \\[7\\] but the model has 4 classes"):
        instance_targets([(torch.tensor([0, 1, 2]), masks), (torch.tensor([7]), masks[:1])], NUM_CLASSES, "cpu")
    with pytest.raises(DataError, match="do not pair up"):
        instance_targets([(torch.tensor([0, 1]), masks)], NUM_CLASSES, "cpu")
    with pytest.raises(ConfigError, match="mask_weight"):
        InstanceCriterion(NUM_CLASSES, mask_weight=-1.0)


def test_a_small_mask2former_decoder_learns_instances():
    from gkd_deploy.models.decoders.mask2former import Mask2FormerDecoder, Mask2FormerOptions

    small = {"hidden_dim": 32, "num_queries": 6, "dec_layers": 2, "pixel_layers": 1, "num_heads": 4,
             "num_points_deform": 2, "dim_feedforward": 64, "pixel_ffn": 64, "groups": 4}
    decoder = Mask2FormerDecoder(16, 4, NUM_CLASSES, Mask2FormerOptions(**small))
    criterion = InstanceCriterion(NUM_CLASSES, PixelCentres(SIZE, SIZE))
    features = [torch.randn(1, 16, 4, 4) for _ in range(4)]  # stride-16 maps of a 64 x 64 input
    instances = [(torch.tensor([2, 0, 3]), blob_masks())]  # 16 x 16: the decoder's stride-4 grid
    losses = fit_losses(lambda: decoder.forward_train(features), criterion, instances, decoder.parameters(), 8, 2e-3)
    assert losses[-1] < 0.8 * losses[0]
