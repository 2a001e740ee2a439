"""Instance post-processing: top-k over query x class on hand-made logits, mask scores, resizing,
and the same numbers from an exported ONNX graph."""

from __future__ import annotations

import io
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gkd_deploy.errors import ConfigError
from gkd_deploy.instance import InstancePostprocess, instance_predictions

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


def hand_made() -> tuple[torch.Tensor, torch.Tensor]:
    """One image, 3 queries, 2 classes (+ no object), 4 x 4 masks.

    query 0: class 1 with probability 0.7 (0.1 class 0, 0.2 no object), mask = left half, logits +-2;
    query 1: almost surely "no object";
    query 2: class 0 with 0.5, class 1 with 0.3; mask = the top-left pixel, logit 0 elsewhere (undecided).
    """
    probabilities = torch.tensor([[0.1, 0.7, 0.2], [0.001, 0.001, 0.998], [0.5, 0.3, 0.2]])
    class_logits = probabilities.log()[None]
    mask_logits = torch.zeros(1, 3, 4, 4)
    mask_logits[0, 0] = -2.0
    mask_logits[0, 0, :, :2] = 2.0
    mask_logits[0, 1] = -5.0
    mask_logits[0, 2, 0, 0] = 3.0
    return class_logits, mask_logits


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_top_k_over_query_and_class_with_mask_scores():
    masks, classes, scores = instance_predictions(*hand_made(), top_k=3)
    assert masks.shape == (1, 3, 4, 4) and masks.dtype == torch.bool
    # The three best (query, class) pairs in order of class probability: (0, 1), (2, 0), (2, 1).
    assert classes[0].tolist() == [1, 0, 1]
    left_half = torch.zeros(4, 4, dtype=torch.bool)
    left_half[:, :2] = True
    corner = torch.zeros(4, 4, dtype=torch.bool)
    corner[0, 0] = True
    assert torch.equal(masks[0, 0], left_half)
    assert torch.equal(masks[0, 1], corner) and torch.equal(masks[0, 2], corner)
    expected = [0.7 * sigmoid(2.0), 0.5 * sigmoid(3.0), 0.3 * sigmoid(3.0)]
    torch.testing.assert_close(scores[0], torch.tensor(expected))


def test_an_empty_mask_scores_zero_and_k_is_capped_by_the_pairs():
    class_logits, mask_logits = hand_made()
    masks, classes, scores = instance_predictions(class_logits, mask_logits, top_k=100)
    assert scores.shape == classes.shape == (1, 6)  # 3 queries x 2 classes
    # Pairs by probability: (0, 1), (2, 0), (2, 1), (0, 0), then query 1's two (empty mask) last.
    assert classes[0, :4].tolist() == [1, 0, 1, 0] and sorted(classes[0, 4:].tolist()) == [0, 1]  # a tie
    empty = ~masks[0].flatten(1).any(1)
    assert empty.tolist() == [False, False, False, False, True, True]
    assert (scores[0][empty] == 0).all() and (scores[0][~empty] > 0).all()


def test_masks_are_thresholded_after_resizing_the_logits():
    class_logits, mask_logits = hand_made()
    masks, _, scores = instance_predictions(class_logits, mask_logits, (8, 12), top_k=1)
    assert masks.shape == (1, 1, 8, 12)
    assert masks[0, 0, :, :6].all() and not masks[0, 0, :, 6:].any()  # the left half, at 8 x 12
    assert 0.7 * sigmoid(1.0) < scores[0, 0] < 0.7  # mean probability inside, blurred at the edge


def test_batched_images_do_not_mix():
    class_logits, mask_logits = hand_made()
    other_logits, other_masks = torch.randn(1, 3, 3), torch.randn(1, 3, 4, 4)
    batched = instance_predictions(torch.cat((class_logits, other_logits)), torch.cat((mask_logits, other_masks)),
                                   top_k=4)
    for index, single in enumerate((instance_predictions(class_logits, mask_logits, top_k=4),
                                    instance_predictions(other_logits, other_masks, top_k=4))):
        for got, want in zip(batched, single):
            assert torch.equal(got[index], want[0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::UserWarning")
def test_exported_postprocess_gives_the_same_instances():
    module = InstancePostprocess(output_size=(16, 16), top_k=5).eval()
    generator = torch.Generator().manual_seed(0)
    example = (torch.randn(2, 4, 3, generator=generator), torch.randn(2, 4, 8, 8, generator=generator))
    buffer = io.BytesIO()
    torch.onnx.export(module, example, buffer, opset_version=17, dynamo=False,
                      input_names=["class_logits", "mask_logits"], output_names=["masks", "classes", "scores"],
                      dynamic_axes={name: {0: "batch"} for name in ("class_logits", "mask_logits", "masks", "classes",
                                                                    "scores")})
    graph = onnx.load_model_from_string(buffer.getvalue())
    onnx.checker.check_model(graph, full_check=True)
    assert "TopK" in {node.op_type for node in graph.graph.node}
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        inputs = (torch.randn(batch, 4, 3, generator=generator), torch.randn(batch, 4, 8, 8, generator=generator))
        want = module(*inputs)
        got = session.run(None, {"class_logits": inputs[0].numpy(), "mask_logits": inputs[1].numpy()})
        assert got[0].dtype == np.bool_ and got[0].shape == (batch, 5, 16, 16)
        assert (got[0] == want[0].numpy()).mean() > 0.999  # a logit at exactly 0 may round either way
        np.testing.assert_array_equal(got[1], want[1].numpy())
        np.testing.assert_allclose(got[2], want[2].numpy(), atol=1e-5)


def test_top_k_must_be_positive():
    with pytest.raises(ConfigError, match="top_k must be at least 1"):
        instance_predictions(*hand_made(), top_k=0)
