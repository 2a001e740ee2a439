"""Pixel contrastive loss against an explicit reference, the negative sampler's distribution, its
lack of gradient and of a P x P matrix, the ablation variants, and the projection head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from gkd_deploy.errors import ConfigError
from gkd_deploy.instance import (
    NEGATIVE_SAMPLINGS,
    NegativeMemory,
    PixelContrastiveLoss,
    PixelProjectionHead,
    instance_descriptors,
    sample_negatives,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors

B, D, H, W = 2, 8, 4, 5


def unit(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=generator), dim=1)


def flipped_points() -> torch.Tensor:
    """(B, H, W, 2): weak cell (y, x) seen at strong cell (y, W-1-x), at its centre."""
    ys = (torch.arange(H) + 0.5) / H
    xs = (W - 1 - torch.arange(W) + 0.5) / W
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).expand(B, -1, -1, -1)


def predictions(batch: int, height: int, width: int, generator: torch.Generator, queries: int = 3,
                classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(batch, queries, classes + 1, generator=generator),
            3.0 * torch.randn(batch, queries, height, width, generator=generator))


def reference_loss(weak: torch.Tensor, strong: torch.Tensor, anchors: list[int], negatives: list[list[int]],
                   temperature: float) -> float:
    """-mean_p log(e^{s+} / (e^{s+} + sum_k e^{s-_k})), one anchor and one negative at a time."""
    total = 0.0
    for anchor, chosen in zip(anchors, negatives):
        b, y, x = anchor // (H * W), anchor % (H * W) // W, anchor % W
        z = weak[b, :, y, x]
        positive = math.exp(float(z @ strong[b, :, y, W - 1 - x]) / temperature)
        negative = 0.0
        for index in chosen:
            nb, ny, nx = index // (H * W), index % (H * W) // W, index % W
            negative += math.exp(float(z @ strong[nb, :, ny, nx]) / temperature)
        total += -math.log(positive / (positive + negative))
    return total / len(anchors)


def test_loss_matches_the_explicit_formula_on_the_same_negatives():
    generator = torch.Generator().manual_seed(0)
    weak, strong = unit(B, D, H, W, generator=generator), unit(B, D, H, W, generator=generator)
    valid = torch.rand(B, H, W, generator=generator) > 0.3
    loss_fn = PixelContrastiveLoss(temperature=0.2, num_negatives=7, max_anchors=None)
    sample = loss_fn.sample(valid, (H, W), predictions(B, H, W, generator), predictions(B, H, W, generator),
                            generator)
    assert sorted(sample.anchors.tolist()) == valid.flatten().nonzero().squeeze(1).tolist()
    assert sample.negatives.shape == (int(valid.sum()), 7)
    weak.requires_grad_(True)
    strong.requires_grad_(True)
    loss = loss_fn.loss(weak, strong, flipped_points(), sample)
    want = reference_loss(weak.detach(), strong.detach(), sample.anchors.tolist(), sample.negatives.tolist(), 0.2)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert weak.grad.abs().sum() > 0 and strong.grad.abs().sum() > 0  # both views learn


def test_anchors_are_a_uniform_subset_of_the_valid_pixels():
    generator = torch.Generator().manual_seed(1)
    valid = torch.zeros(B, H, W, dtype=torch.bool)
    valid[0, 1:3] = True
    valid[1, :, 4] = True
    sample = PixelContrastiveLoss(num_negatives=3, max_anchors=5, sampling="uniform").sample(
        valid, (H, W), generator=generator)
    assert len(set(sample.anchors.tolist())) == 5
    assert valid.flatten()[sample.anchors].all()
    assert ((sample.negatives >= 0) & (sample.negatives < B * H * W)).all()


def test_no_valid_pixel_gives_zero_with_gradient():
    generator = torch.Generator().manual_seed(0)
    weak = unit(B, D, H, W, generator=generator).requires_grad_(True)
    loss = PixelContrastiveLoss(sampling="uniform")(weak, weak.detach(), flipped_points(),
                                                    torch.zeros(B, H, W, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()


def weights_of(anchors: torch.Tensor, pool: torch.Tensor, power: float) -> torch.Tensor:
    return (1.0 - anchors @ pool.T).clamp(min=0.0) ** power


@pytest.mark.parametrize("power, max_rounds", [(1.0, 16), (1.0, 0), (2.0, 16), (0.5, 16)])
def test_negatives_are_drawn_in_proportion_to_the_weights(power, max_rounds, monkeypatch):
    if max_rounds == 0:  # the exact draw alone, two anchors' weights per chunk
        monkeypatch.setattr("gkd_deploy.instance.contrastive.CHUNK_ELEMENTS", 24)
    generator = torch.Generator().manual_seed(0)
    pool = F.normalize(torch.rand(12, 6, generator=generator) ** 3, dim=1)  # non-negative, some near-parallel
    anchors = torch.cat((pool[:2], F.normalize(torch.rand(1, 6, generator=generator), dim=1)))  # 2 in the pool
    draws = 30000
    negatives = sample_negatives(anchors, pool, draws, power=power, generator=generator, max_rounds=max_rounds)
    expected = weights_of(anchors.double(), pool.double(), power)
    expected = torch.where(expected > 1e-6, expected, 0.0)
    expected = expected / expected.sum(1, keepdim=True)
    for anchor in range(3):
        counts = torch.bincount(negatives[anchor], minlength=12).double()
        support = expected[anchor] > 0
        assert counts[~support].sum() == 0  # an anchor's own copy (d = 0) is never drawn
        assert 0.5 * (counts / draws - expected[anchor]).abs().sum() < 0.01  # total variation
        assert chisquare(counts[support].numpy(), expected[anchor][support].numpy() * draws).pvalue > 1e-3


def test_an_anchor_like_the_whole_pool_draws_uniformly():
    generator = torch.Generator().manual_seed(0)
    pool = F.normalize(torch.ones(5, 4), dim=1)
    negatives = sample_negatives(pool[:1], pool, 5000, generator=generator, max_rounds=4)
    counts = torch.bincount(negatives[0], minlength=5)
    assert (counts > 900).all()


def test_the_sampler_has_no_gradient():
    generator = torch.Generator().manual_seed(0)
    weak_predictions = [t.requires_grad_(True) for t in predictions(B, H, W, generator)]
    strong_predictions = [t.requires_grad_(True) for t in predictions(B, H, W, generator)]
    descriptors = instance_descriptors(*weak_predictions, (H, W))
    assert not descriptors.requires_grad
    weak = unit(B, D, H, W, generator=generator).requires_grad_(True)
    loss = PixelContrastiveLoss(num_negatives=4)(weak, unit(B, D, H, W, generator=generator), flipped_points(),
                                                 torch.ones(B, H, W, dtype=torch.bool), weak_predictions,
                                                 strong_predictions, generator)
    loss.backward()
    assert all(t.grad is None for t in (*weak_predictions, *strong_predictions))
    assert weak.grad is not None


def test_a_large_pool_never_builds_all_pairs():
    """120,000 anchors x 120,000 pool pixels: all pairs would be 14.4e9 weights (58 GB)."""
    generator = torch.Generator().manual_seed(0)
    height, width = 300, 400
    class_logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])  # query 0 class 0, query 1 class 1
    mask_logits = torch.full((1, 2, height, width), -6.0)
    mask_logits[0, 0, :, :width // 2] = 6.0  # query 0 owns the left half, query 1 the right
    mask_logits[0, 1, :, width // 2:] = 6.0
    anchors = instance_descriptors(class_logits, mask_logits, (height, width)).flatten(0, 1)
    negatives = sample_negatives(anchors, anchors, 2, generator=generator)
    assert negatives.shape == (height * width, 2)
    left = (torch.arange(height * width) % width) < width // 2
    other_half = left[negatives] != left[:, None]
    assert other_half.float().mean() > 0.99  # the other instance: same-instance pixels have d ~ 0


def test_ablation_variants_by_name():
    generator = torch.Generator().manual_seed(0)
    class_logits, mask_logits = predictions(1, 6, 6, generator, queries=5, classes=3)
    assert instance_descriptors(class_logits, mask_logits, (3, 3)).shape == (1, 9, 5 + 4)
    assert instance_descriptors(class_logits, mask_logits, (3, 3), "mask").shape == (1, 9, 5)
    assert instance_descriptors(class_logits, mask_logits, (3, 3), "class").shape == (1, 9, 4)
    assert set(NEGATIVE_SAMPLINGS) == {"instance", "squared", "sqrt", "uniform", "mask", "class"}
    with pytest.raises(ConfigError, match="unknown negative sampling 'hard'"):
        PixelContrastiveLoss(sampling="hard")
    with pytest.raises(ConfigError, match="needs both views' predictions"):
        PixelContrastiveLoss().sample(torch.ones(1, 3, 3, dtype=torch.bool), (3, 3))


# --- the memory bank (the paper's ablation) ---------------------------------------------------------

def test_the_memory_keeps_the_last_pixels_first_in_first_out_and_only_after_commit():
    generator = torch.Generator().manual_seed(0)
    memory = NegativeMemory(size=5, per_step=3)
    first = torch.arange(8.0).view(4, 2)  # 4 pixels, of which 3 are kept
    memory.stage(first, first + 100, generator)
    assert memory.entries(torch.device("cpu")) == (None, None)  # nothing before the step is done
    staged_first = memory._staged[0].clone()
    memory.commit()
    embeddings, descriptors = memory.entries(torch.device("cpu"))
    assert torch.equal(embeddings, staged_first) and torch.equal(descriptors, staged_first + 100)
    assert {tuple(row) for row in staged_first.tolist()} < {tuple(row) for row in first.tolist()}
    second = torch.arange(100.0, 106.0).view(3, 2)
    memory.stage(second, second + 100, generator)
    staged_second = memory._staged[0].clone()
    memory.commit()
    embeddings, _ = memory.entries(torch.device("cpu"))
    # 3 + 3 pixels in 5 rows: the oldest one is overwritten, the rest stay where they were.
    assert memory.count == 5 and memory.position == 1
    assert torch.equal(embeddings[1:3], staged_first[1:]) and torch.equal(embeddings[3:], staged_second[:2])
    assert torch.equal(embeddings[0], staged_second[2])
    memory.commit()  # nothing staged: nothing changes
    assert torch.equal(memory.entries(torch.device("cpu"))[0], embeddings)
    copy = NegativeMemory(size=5, per_step=3)
    copy.load_state_dict(memory.state_dict())
    assert (copy.count, copy.position) == (5, 1) and torch.equal(copy.entries(torch.device("cpu"))[0], embeddings)
    with pytest.raises(ConfigError, match="saved one holds 5 rows, this one 4"):
        NegativeMemory(size=4, per_step=3).load_state_dict(memory.state_dict())


def one_instance_everywhere(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions whose every pixel has the same descriptor: query 0, class 0, everywhere."""
    class_logits = torch.full((batch, 3, 4), -20.0)
    class_logits[:, :, 0] = 20.0
    mask_logits = torch.full((batch, 3, height, width), -20.0)
    mask_logits[:, 0] = 20.0
    return class_logits, mask_logits


def test_negatives_come_from_the_memory_where_its_pixels_differ_from_the_batch_and_the_loss_uses_them():
    generator = torch.Generator().manual_seed(3)
    weak, strong = unit(B, D, H, W, generator=generator), unit(B, D, H, W, generator=generator)
    valid = torch.ones(B, H, W, dtype=torch.bool)
    loss_fn = PixelContrastiveLoss(temperature=0.2, num_negatives=6, max_anchors=None, memory_bank=4)
    remembered = unit(4, D, generator=generator)
    # Descriptors u = [m; e] of another query and class than every batch pixel's: d = 1 to the
    # anchors, while the batch's own pixels all have d = 0 (weight 0) to them.
    other = torch.zeros(4, 3 + 4)
    other[:, 1] = other[:, 3 + 1] = 2 ** -0.5
    loss_fn.memory.stage(remembered, other)
    loss_fn.memory.commit()
    kept, _ = loss_fn.memory.entries(torch.device("cpu"))
    prediction = one_instance_everywhere(B, H, W)
    sample = loss_fn.sample(valid, (H, W), prediction, prediction, generator)
    assert (sample.negatives >= B * H * W).all() and (sample.negatives < B * H * W + 4).all()
    loss = loss_fn.loss(weak, strong, flipped_points(), sample)
    # The explicit formula with the remembered embeddings as the negatives.
    anchors = weak.flatten(2).transpose(1, 2).reshape(-1, D)[sample.anchors]
    positives = strong.flip(-1).flatten(2).transpose(1, 2).reshape(-1, D)[sample.anchors]
    negatives = kept[sample.negatives - B * H * W]
    positive = (anchors * positives).sum(-1) / 0.2
    negative = torch.einsum("nd,nkd->nk", anchors, negatives) / 0.2
    want = -(positive - torch.logsumexp(torch.cat((positive[:, None], negative), 1), 1)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_the_loss_stages_its_strong_pixels_for_the_memory_and_uniform_sampling_reaches_all_of_it():
    generator = torch.Generator().manual_seed(4)
    strong = unit(B, D, H, W, generator=generator)
    loss_fn = PixelContrastiveLoss(num_negatives=50, max_anchors=8, sampling="uniform", memory_bank=10)
    for _ in range(2):
        loss_fn(strong.flip(-1), strong, flipped_points(), torch.ones(B, H, W, dtype=torch.bool),
                generator=generator)
        loss_fn.memory.commit()
    embeddings, descriptors = loss_fn.memory.entries(torch.device("cpu"))
    assert embeddings.shape == (10, D) and descriptors is None  # 8 per step, the 10 latest kept
    pool = strong.flatten(2).transpose(1, 2).reshape(-1, D)
    assert all(any(torch.equal(row, pixel) for pixel in pool) for row in embeddings)  # strong-view pixels
    sample = loss_fn.sample(torch.ones(B, H, W, dtype=torch.bool), (H, W), generator=generator)
    assert sample.negatives.max() >= B * H * W and sample.negatives.max() < B * H * W + 10


def test_projection_head_gives_unit_embeddings():
    head = PixelProjectionHead(24)
    embeddings = head(torch.randn(2, 24, 5, 7))
    assert embeddings.shape == (2, 128, 5, 7)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2, 5, 7))
