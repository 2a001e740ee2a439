"""The baseline distillation losses (CWD, ViTKD, Af-DCD, G2SD) against naive references.

Every reference below is written out independently of the module it checks (explicit loops,
softmax/KL/cross-entropy formulas, hand-rolled convolutions and pooling); only the modules'
parameters are shared. Values and gradients are compared in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gkd_deploy.distill.afdcd import AfDCDLoss, afdcd_keep_mask
from gkd_deploy.distill.cwd import ChannelWiseDivergence
from gkd_deploy.distill.g2sd import G2SDDecoder, g2sd_keep_indices, g2sd_loss
from gkd_deploy.distill.vitkd import ViTKDLoss, vitkd_mask

DOUBLE = torch.float64


def assert_same_values_and_gradients(got, want, inputs, rtol=1e-7, atol=1e-10):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    # An input a term does not use (the deep layer in "mimic") has a zero gradient on both sides.
    options = dict(retain_graph=True, allow_unused=True, materialize_grads=True)
    got_grads = torch.autograd.grad(got, inputs, **options)
    want_grads = torch.autograd.grad(want, inputs, **options)
    for index, (got_grad, want_grad) in enumerate(zip(got_grads, want_grads)):
        torch.testing.assert_close(got_grad, want_grad, rtol=rtol, atol=atol, msg=lambda m: f"input {index}: {m}")


def reference_linear(tokens, linear):
    return tokens @ linear.weight.T + linear.bias


def reference_conv3x3(feature_map, conv):
    """Padding 1, stride 1 cross-correlation as nine shifted matrix products."""
    batch, _, height, width = feature_map.shape
    padded = F.pad(feature_map, (1, 1, 1, 1))
    output = conv.bias[None, :, None, None].expand(batch, -1, height, width)
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy : dy + height, dx : dx + width]
            output = output + torch.einsum("oi,bihw->bohw", conv.weight[:, :, dy, dx], window)
    return output


def set_identity(linear):
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()


# ---------------------------------------------------------------- CWD


def reference_cwd(module, student_tokens, teacher_tokens):
    aligned = reference_linear(student_tokens, module.align)
    batch, tokens, channels = teacher_tokens.shape
    total = 0.0
    for b in range(batch):
        for c in range(channels):
            student_exp = [torch.exp(aligned[b, i, c] / module.tau) for i in range(tokens)]
            teacher_exp = [torch.exp(teacher_tokens[b, i, c] / module.tau) for i in range(tokens)]
            student_sum, teacher_sum = sum(student_exp), sum(teacher_exp)
            for i in range(tokens):
                p_teacher = teacher_exp[i] / teacher_sum
                p_student = student_exp[i] / student_sum
                total = total + p_teacher * (torch.log(p_teacher) - torch.log(p_student))
    return module.weight * module.tau**2 * total / (batch * channels)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_cwd_matches_the_explicit_kl_values_and_gradients(tau):
    module = ChannelWiseDivergence(6, 8, tau=tau, weight=3.0).double()
    student = torch.randn(2, 16, 6, dtype=DOUBLE, requires_grad=True)
    teacher = torch.randn(2, 16, 8, dtype=DOUBLE, requires_grad=True)
    inputs = [student, teacher, *module.parameters()]
    assert_same_values_and_gradients(module(student, teacher), reference_cwd(module, student, teacher), inputs)


def test_cwd_is_zero_for_identical_tokens_after_identity_alignment():
    module = ChannelWiseDivergence(8, 8).double()
    set_identity(module.align)
    tokens = torch.randn(2, 16, 8, dtype=DOUBLE)
    torch.testing.assert_close(module(tokens, tokens), torch.zeros((), dtype=DOUBLE), atol=1e-12, rtol=0)
    assert module(tokens, torch.randn_like(tokens)) > 0


def test_cwd_ignores_a_per_channel_offset():
    # A softmax over positions is blind to a constant added to one channel at every position.
    module = ChannelWiseDivergence(8, 8).double()
    set_identity(module.align)
    tokens = torch.randn(2, 16, 8, dtype=DOUBLE)
    shifted = tokens + torch.randn(1, 1, 8, dtype=DOUBLE) * 5
    torch.testing.assert_close(module(tokens, shifted), torch.zeros((), dtype=DOUBLE), atol=1e-12, rtol=0)


def test_cwd_validates_shapes():
    module = ChannelWiseDivergence(6, 8)
    with pytest.raises(ValueError, match=r"student_tokens must have shape \(B, N, 6\)"):
        module(torch.randn(2, 16, 5), torch.randn(2, 16, 8))
    with pytest.raises(ValueError, match=r"teacher_tokens must have shape \(B, N, 8\)"):
        module(torch.randn(2, 16, 6), torch.randn(2, 16, 7))
    with pytest.raises(ValueError, match="teacher_tokens must have the batch size and token count"):
        module(torch.randn(2, 16, 6), torch.randn(2, 9, 8))
    with pytest.raises(ValueError, match="tau must be > 0"):
        ChannelWiseDivergence(6, 8, tau=0)


# ---------------------------------------------------------------- ViTKD


def reference_vitkd(module, student_shallow, teacher_shallow, student_deep, teacher_deep, grid, mask):
    batch = student_shallow.shape[0]
    mimic = 0.0
    for layer in range(2):
        aligned = reference_linear(student_shallow[:, layer], module.align_shallow[layer])
        mimic = mimic + ((aligned - teacher_shallow[:, layer]) ** 2).sum()
    mimic = module.alpha * mimic / batch

    height, width = grid
    tokens = student_deep.shape[1]
    aligned = reference_linear(student_deep, module.align_deep)
    images = []
    for b in range(batch):
        hidden = [module.mask_token[0, 0] if mask[b, n] else aligned[b, n] for n in range(tokens)]
        # Token n sits at row n // w, column n % w: stack each row's tokens, then the rows.
        rows = [torch.stack([hidden[row * width + column] for column in range(width)], dim=-1) for row in range(height)]
        images.append(torch.stack(rows, dim=-2))  # (Ct, h, w)
    feature_map = torch.stack(images)
    first, second = module.generation[0], module.generation[2]
    generated = reference_conv3x3(reference_conv3x3(feature_map, first).clamp_min(0), second)
    generate = 0.0
    for b in range(batch):
        for n in range(tokens):
            if mask[b, n]:
                generate = generate + ((generated[b, :, n // width, n % width] - teacher_deep[b, n]) ** 2).sum()
    generate = module.beta * generate / batch / module.mask_ratio
    return {"mimic": mimic, "generate": generate, "loss": mimic + generate}


def vitkd_inputs(batch=2, grid=(4, 4), student_dim=6, teacher_dim=8):
    tokens = grid[0] * grid[1]
    return (
        torch.randn(batch, 2, tokens, student_dim, dtype=DOUBLE, requires_grad=True),
        torch.randn(batch, 2, tokens, teacher_dim, dtype=DOUBLE),
        torch.randn(batch, tokens, student_dim, dtype=DOUBLE, requires_grad=True),
        torch.randn(batch, tokens, teacher_dim, dtype=DOUBLE),
    )


@pytest.mark.parametrize("grid", [(4, 4), (2, 8)])
def test_vitkd_matches_the_explicit_formulation_values_and_gradients(grid):
    module = ViTKDLoss(6, 8, alpha=0.3, beta=0.2, mask_ratio=0.5).double()
    with torch.no_grad():
        module.mask_token.normal_()  # zero at init: a random token tests where it goes
    student_shallow, teacher_shallow, student_deep, teacher_deep = vitkd_inputs(grid=grid)
    mask = vitkd_mask(2, grid[0] * grid[1], 0.5, torch.Generator().manual_seed(1))
    got = module(student_shallow, teacher_shallow, student_deep, teacher_deep, grid, mask)
    want = reference_vitkd(module, student_shallow, teacher_shallow, student_deep, teacher_deep, grid, mask)
    inputs = [student_shallow, student_deep, *module.parameters()]
    for key in ("mimic", "generate", "loss"):
        assert_same_values_and_gradients(got[key], want[key], inputs)


def test_vitkd_mimic_is_zero_for_identical_tokens_after_identity_alignment():
    module = ViTKDLoss(8, 8).double()
    for align in module.align_shallow:
        set_identity(align)
    shallow = torch.randn(2, 2, 16, 8, dtype=DOUBLE)
    torch.testing.assert_close(module.mimic(shallow, shallow), torch.zeros((), dtype=DOUBLE))


def test_vitkd_generation_sees_only_the_masked_teacher_tokens():
    module = ViTKDLoss(6, 8).double()
    _, _, student_deep, teacher_deep = vitkd_inputs()
    mask = vitkd_mask(2, 16, 0.5, torch.Generator().manual_seed(2))
    changed = teacher_deep.clone()
    changed[~mask] += 10.0
    before = module.generation_loss(student_deep, teacher_deep, (4, 4), mask)
    after = module.generation_loss(student_deep, changed, (4, 4), mask)
    torch.testing.assert_close(before, after)


def test_vitkd_mask_token_starts_at_zero_and_learns():
    module = ViTKDLoss(6, 8)
    assert module.mask_token.shape == (1, 1, 8) and not module.mask_token.any()
    student_shallow, teacher_shallow, student_deep, teacher_deep = (x.float().detach() for x in vitkd_inputs())
    mask = vitkd_mask(2, 16, 0.5, torch.Generator().manual_seed(3))
    module(student_shallow, teacher_shallow, student_deep, teacher_deep, (4, 4), mask)["loss"].backward()
    assert module.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize(("tokens", "ratio"), [(16, 0.5), (16, 0.3), (196, 0.75), (10, 1.0)])
def test_vitkd_mask_has_exactly_the_configured_count(tokens, ratio):
    mask = vitkd_mask(64, tokens, ratio, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (64, tokens)
    assert (mask.sum(dim=1) == tokens - int(tokens * (1 - ratio))).all()
    if 0 < mask.sum(dim=1)[0] < tokens:
        assert len({tuple(row.tolist()) for row in mask}) > 1  # rows drawn independently


def test_vitkd_mask_follows_the_generator():
    first = vitkd_mask(4, 16, 0.5, torch.Generator().manual_seed(7))
    again = vitkd_mask(4, 16, 0.5, torch.Generator().manual_seed(7))
    other = vitkd_mask(4, 16, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_vitkd_validates_shapes_and_options():
    module = ViTKDLoss(6, 8)
    student_shallow, teacher_shallow, student_deep, teacher_deep = (x.float().detach() for x in vitkd_inputs())
    mask = vitkd_mask(2, 16, 0.5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"student_shallow must have shape \(\?, 2, \?, 6\)"):
        module(student_shallow[:, :1], teacher_shallow, student_deep, teacher_deep, (4, 4), mask)
    with pytest.raises(ValueError, match=r"teacher_shallow must have shape \(2, 2, 16, 8\)"):
        module(student_shallow, teacher_shallow[..., :7], student_deep, teacher_deep, (4, 4), mask)
    with pytest.raises(ValueError, match=r"teacher_deep must have shape \(2, 16, 8\)"):
        module(student_shallow, teacher_shallow, student_deep, teacher_deep[:, :9], (4, 4), mask)
    with pytest.raises(ValueError, match="grid must be"):
        module(student_shallow, teacher_shallow, student_deep, teacher_deep, (4, 5), mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        module(student_shallow, teacher_shallow, student_deep, teacher_deep, (4, 4), mask.float())
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\]"):
        ViTKDLoss(6, 8, mask_ratio=0.0)


# ---------------------------------------------------------------- Af-DCD


def reference_max_pool(feature_map, pool):
    batch, channels, height, width = feature_map.shape
    blocks = feature_map.reshape(batch, channels, height // pool, pool, width // pool, pool)
    return blocks.amax(dim=(3, 5))


def reference_afdcd(module, student_map, teacher_map, keep):
    batch = student_map.shape[0]
    aligned = torch.einsum("oi,bihw->bohw", module.align.weight[:, :, 0, 0], student_map)
    aligned = aligned + module.align.bias[None, :, None, None]
    masked = aligned * keep
    projected = reference_conv3x3(reference_conv3x3(masked, module.projector[0]).clamp_min(0), module.projector[2])
    feature = module.feature_weight * ((projected - teacher_map) ** 2).sum() / batch

    student, teacher = projected, teacher_map
    if module.pool > 1:
        student, teacher = reference_max_pool(student, module.pool), reference_max_pool(teacher, module.pool)
    _, channels, height, width = student.shape
    patch, groups, width_of_group = module.patch, module.groups, channels // module.groups
    total = 0.0
    for b in range(batch):
        for top in range(0, height, patch):
            for left in range(0, width, patch):
                # Items (position, group) of this spatial patch, for student and teacher alike.
                positions = [(row, column) for row in range(patch) for column in range(patch)]
                items = [(row, column, group) for row, column in positions for group in range(groups)]

                def vector(feature_map, item):
                    row, column, group = item
                    channels_of_group = slice(group * width_of_group, (group + 1) * width_of_group)
                    return feature_map[b, channels_of_group, top + row, left + column]

                for anchor in items:
                    student_vector = vector(student, anchor)
                    # The positive first, then every teacher item of another group.
                    candidates = [anchor] + [other for other in items if other[2] != anchor[2]]
                    teacher_vectors = torch.stack([vector(teacher, other) for other in candidates])
                    logits = -(student_vector - teacher_vectors).abs().sum(dim=1) / module.tau
                    total = total - logits[0] + torch.log(torch.exp(logits).sum())
    ctr = total / (height * width)
    contrast = module.contrast_weight * ctr / batch
    return {"feature": feature, "contrast": contrast, "loss": feature + contrast}


@pytest.mark.parametrize(
    ("size", "pool", "patch", "groups"), [((8, 8), 2, 2, 4), ((4, 8), 1, 2, 2), ((8, 4), 2, 2, 8)]
)
def test_afdcd_matches_the_explicit_formulation_values_and_gradients(size, pool, patch, groups):
    module = AfDCDLoss(6, 8, tau=0.5, groups=groups, pool=pool, patch=patch, feature_weight=0.1, contrast_weight=0.2)
    module = module.double()
    height, width = size
    student = torch.randn(2, 6, height, width, dtype=DOUBLE, requires_grad=True)
    teacher = torch.randn(2, 8, height, width, dtype=DOUBLE, requires_grad=True)
    keep = afdcd_keep_mask(2, height, width, 0.5, torch.Generator().manual_seed(0)).double()
    got = module(student, teacher, keep)
    want = reference_afdcd(module, student, teacher, keep)
    inputs = [student, teacher, *module.parameters()]
    for key in ("feature", "contrast", "loss"):
        assert_same_values_and_gradients(got[key], want[key], inputs)


def test_afdcd_identical_maps_give_zero_feature_loss_and_near_zero_contrast():
    # Identity alignment and projector (the ReLU passes non-negative maps unchanged).
    module = AfDCDLoss(8, 8, tau=1e-3, groups=4, pool=2, patch=2).double()
    with torch.no_grad():
        for conv in (module.align, module.projector[0], module.projector[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            center = conv.weight.shape[-1] // 2
            conv.weight[:, :, center, center] = torch.eye(8)
    # Non-negative, and spread wide so that every negative is far from its anchor.
    feature_map = 100 * torch.rand(2, 8, 8, 8, dtype=DOUBLE)
    losses = module(feature_map, feature_map, torch.ones(2, 1, 8, 8, dtype=DOUBLE))
    torch.testing.assert_close(losses["feature"], torch.zeros((), dtype=DOUBLE))
    # The positive is at distance 0; at a tiny temperature the negatives' share vanishes.
    assert losses["contrast"] < 1e-12
    shuffled = module(feature_map, feature_map.roll(1, dims=1), torch.ones(2, 1, 8, 8, dtype=DOUBLE))
    assert shuffled["contrast"] > 1.0


def test_afdcd_fully_masked_student_gets_no_gradient():
    module = AfDCDLoss(6, 8, groups=4, pool=2, patch=2)
    student = torch.randn(2, 6, 8, 8, requires_grad=True)
    module(student, torch.randn(2, 8, 8, 8), torch.zeros(2, 1, 8, 8))["loss"].backward()
    assert not student.grad.any()


def test_afdcd_keep_mask_masks_about_the_configured_ratio():
    keep = afdcd_keep_mask(8, 32, 32, 0.75, torch.Generator().manual_seed(0))
    assert keep.shape == (8, 1, 32, 32) and keep.dtype == torch.float32
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    assert abs((keep == 0).float().mean().item() - 0.75) < 0.02
    assert not afdcd_keep_mask(2, 4, 4, 0.0, torch.Generator()).eq(0).any()
    assert not afdcd_keep_mask(2, 4, 4, 1.0, torch.Generator()).any()
    first = afdcd_keep_mask(2, 8, 8, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(first, afdcd_keep_mask(2, 8, 8, 0.5, torch.Generator().manual_seed(5)))


def test_afdcd_default_configuration_runs():
    # The official defaults: 16 groups, pool 4, 4x4 patches on a 16x16 feature grid.
    module = AfDCDLoss(6, 32)
    keep = afdcd_keep_mask(1, 16, 16, module.mask_ratio, torch.Generator().manual_seed(0))
    losses = module(torch.randn(1, 6, 16, 16), torch.randn(1, 32, 16, 16), keep)
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())


def test_afdcd_validates_shapes_and_divisibility():
    module = AfDCDLoss(6, 8, groups=4, pool=2, patch=2)
    keep = torch.ones(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"student_map must have shape \(B, 6, h, w\)"):
        module(torch.randn(2, 5, 8, 8), torch.randn(2, 8, 8, 8), keep)
    with pytest.raises(ValueError, match=r"teacher_map must have shape \(2, 8, 8, 8\)"):
        module(torch.randn(2, 6, 8, 8), torch.randn(2, 8, 4, 4), keep)
    with pytest.raises(ValueError, match=r"keep must have shape \(2, 1, 8, 8\)"):
        module(torch.randn(2, 6, 8, 8), torch.randn(2, 8, 8, 8), keep[:, :, :4])
    coarse = AfDCDLoss(6, 8, groups=4, pool=2, patch=4)
    with pytest.raises(ValueError, match=r"grid 12x8 pooled by pool=2 gives 6x4.*patch=4.*groups=4.*change pool or patch"):
        coarse(torch.randn(1, 6, 12, 8), torch.randn(1, 8, 12, 8), torch.ones(1, 1, 12, 8))
    with pytest.raises(ValueError, match="groups must divide teacher_dim 8, got groups=3; change groups"):
        AfDCDLoss(6, 8, groups=3)


# ---------------------------------------------------------------- G2SD


def reference_sincos(dim, height, width):
    quarter = dim // 4
    table = torch.zeros(height * width, dim, dtype=DOUBLE)
    for n in range(height * width):
        row, column = n // width, n % width
        for k in range(quarter):
            omega = 10000.0 ** (-k / quarter)
            table[n, k] = math.sin(column * omega)
            table[n, quarter + k] = math.cos(column * omega)
            table[n, 2 * quarter + k] = math.sin(row * omega)
            table[n, 3 * quarter + k] = math.cos(row * omega)
    return table


def reference_g2sd_decoder(decoder, visible_tokens, keep_indices):
    """The decoder's steps written out, with the patches put in place one by one from keep_indices."""
    height, width = decoder.grid
    embedded = reference_linear(visible_tokens, decoder.embed)
    # The module stores its table in fp32 (then .double() casts it): round the reference the same way.
    position = reference_sincos(embedded.shape[-1], height, width).float().double()
    images = []
    for b in range(embedded.shape[0]):
        slots = [decoder.mask_token[0, 0]] * (height * width)
        for order, index in enumerate(keep_indices[b].tolist()):
            slots[index] = embedded[b, 1 + order]
        patches = torch.stack(slots) + position
        images.append(torch.cat([embedded[b, :1], patches]))  # the CLS slot gets no position
    tokens = torch.stack(images)
    for block in decoder.blocks:
        tokens = block(tokens)
    return reference_linear(decoder.norm(tokens), decoder.head)[:, 1:]


def reference_g2sd_loss(predictions, teacher_tokens, masked):
    batch, tokens, channels = predictions.shape
    total, count = 0.0, 0
    for b in range(batch):
        for n in range(tokens):
            if not masked[b, n]:
                continue
            teacher = teacher_tokens[b, n]
            mean = teacher.sum() / channels
            variance = ((teacher - mean) ** 2).sum() / channels
            target = (teacher - mean) / torch.sqrt(variance + 1e-6)
            for c in range(channels):
                difference = (predictions[b, n, c] - target[c]).abs()
                total = total + (0.5 * difference**2 / 2.0 if difference < 2.0 else difference - 1.0)
            count += 1
    return total / (count * channels)


def test_g2sd_keep_indices_split_and_restore():
    keep, restore, masked = g2sd_keep_indices(3, 16, 0.75, torch.Generator().manual_seed(0))
    assert keep.shape == (3, 4) and keep.dtype == torch.long
    assert restore.shape == (3, 16) and restore.dtype == torch.long
    assert masked.shape == (3, 16) and masked.dtype == torch.bool
    assert (masked.sum(dim=1) == 12).all()
    for b in range(3):
        assert not masked[b, keep[b]].any()
        # Visible tokens carry their grid index, mask tokens -1: restoring must give the grid order.
        shuffled = torch.cat([keep[b], torch.full((12,), -1)])
        restored = shuffled[restore[b]]
        expected = torch.where(masked[b], -1, torch.arange(16))
        assert torch.equal(restored, expected)
    again = g2sd_keep_indices(3, 16, 0.75, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip((keep, restore, masked), again))
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        g2sd_keep_indices(3, 16, 1.0, torch.Generator())


def test_g2sd_position_embedding_is_fixed_2d_sincos_with_a_zero_cls_slot():
    decoder = G2SDDecoder(6, 8, (4, 8), decoder_dim=16, depth=1, num_heads=2)
    table = decoder.position_embedding
    assert table.shape == (1, 33, 16) and not table.requires_grad
    torch.testing.assert_close(table[0, 0], torch.zeros(16))
    torch.testing.assert_close(table[0, 1:].double(), reference_sincos(16, 4, 8), rtol=1e-6, atol=1e-6)
    assert "position_embedding" not in decoder.state_dict()
    assert all(parameter is not table for parameter in decoder.parameters())


@pytest.mark.parametrize(("grid", "ratio"), [((4, 4), 0.75), ((2, 8), 0.5)])
def test_g2sd_decoder_matches_the_explicit_forward_values_and_gradients(grid, ratio):
    decoder = G2SDDecoder(6, 8, grid, decoder_dim=16, depth=2, num_heads=2).double()
    tokens = grid[0] * grid[1]
    keep, restore, _ = g2sd_keep_indices(2, tokens, ratio, torch.Generator().manual_seed(4))
    visible = torch.randn(2, 1 + keep.shape[1], 6, dtype=DOUBLE, requires_grad=True)
    got = decoder(visible, restore)
    assert got.shape == (2, tokens, 8)
    want = reference_g2sd_decoder(decoder, visible, keep)
    # A random scalar read-out checks the gradients of every output element.
    weights = torch.randn_like(got)
    inputs = [visible, *decoder.parameters()]
    assert_same_values_and_gradients((got * weights).sum(), (want * weights).sum(), inputs)
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_g2sd_loss_matches_the_explicit_formulation_values_and_gradients():
    # Predictions at scale 2 put differences on both sides of the smooth-L1 beta of 2.0.
    predictions = (2 * torch.randn(2, 16, 8, dtype=DOUBLE)).requires_grad_()
    teacher = (3 * torch.randn(2, 16, 8, dtype=DOUBLE) + 1).requires_grad_()
    _, _, masked = g2sd_keep_indices(2, 16, 0.75, torch.Generator().manual_seed(6))
    got = g2sd_loss(predictions, teacher, masked)
    want = reference_g2sd_loss(predictions, teacher, masked)
    assert_same_values_and_gradients(got, want, [predictions, teacher])


def test_g2sd_loss_is_zero_for_the_normalised_teacher_and_ignores_visible_positions():
    teacher = torch.randn(2, 16, 8, dtype=DOUBLE)
    _, _, masked = g2sd_keep_indices(2, 16, 0.75, torch.Generator().manual_seed(6))
    variance = teacher.var(-1, unbiased=False, keepdim=True)
    normalised = (teacher - teacher.mean(-1, keepdim=True)) / (variance + 1e-6).sqrt()
    torch.testing.assert_close(g2sd_loss(normalised, teacher, masked), torch.zeros((), dtype=DOUBLE))
    wrong_where_visible = torch.where(masked[..., None], normalised, normalised + 5)
    torch.testing.assert_close(g2sd_loss(wrong_where_visible, teacher, masked), torch.zeros((), dtype=DOUBLE))


def test_g2sd_official_vit_s_setting_runs():
    decoder = G2SDDecoder(384, 384, (14, 14))
    assert decoder.position_embedding.shape == (1, 197, 256) and len(decoder.blocks) == 4
    assert decoder.blocks[0].attn.num_heads == 8
    keep, restore, masked = g2sd_keep_indices(1, 196, 0.75, torch.Generator().manual_seed(0))
    predictions = decoder(torch.randn(1, 1 + keep.shape[1], 384), restore)
    assert predictions.shape == (1, 196, 384)
    assert torch.isfinite(g2sd_loss(predictions, torch.randn(1, 196, 384), masked))


def test_g2sd_validates_shapes():
    decoder = G2SDDecoder(6, 8, (4, 4), decoder_dim=16, depth=1, num_heads=2)
    _, restore, masked = g2sd_keep_indices(2, 16, 0.75, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"visible_tokens must have shape \(B, 1 \+ Nv, 6\)"):
        decoder(torch.randn(2, 5, 7), restore)
    with pytest.raises(ValueError, match=r"restore must be a long tensor of shape \(2, 16\)"):
        decoder(torch.randn(2, 5, 6), restore[:, :8])
    with pytest.raises(ValueError, match="at most 16 patch tokens"):
        decoder(torch.randn(2, 18, 6), restore)
    with pytest.raises(ValueError, match="num_heads must divide decoder_dim 16"):
        G2SDDecoder(6, 8, (4, 4), decoder_dim=16, num_heads=3)
    with pytest.raises(ValueError, match="decoder_dim must be a multiple of 4"):
        G2SDDecoder(6, 8, (4, 4), decoder_dim=18, num_heads=2)
    with pytest.raises(ValueError, match="teacher_tokens must have the shape of predictions"):
        g2sd_loss(torch.randn(2, 16, 8), torch.randn(2, 16, 7), masked)
    with pytest.raises(ValueError, match=r"masked must be a bool tensor of shape \(2, 16\)"):
        g2sd_loss(torch.randn(2, 16, 8), torch.randn(2, 16, 8), masked.float())


# ---------------------------------------------------------------- all of them under bf16 autocast


def test_losses_are_computed_in_fp32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cwd = ChannelWiseDivergence(6, 8)(torch.randn(2, 16, 6), torch.randn(2, 16, 8))
        vitkd = ViTKDLoss(6, 8)(
            torch.randn(2, 2, 16, 6), torch.randn(2, 2, 16, 8), torch.randn(2, 16, 6), torch.randn(2, 16, 8),
            (4, 4), vitkd_mask(2, 16, 0.5, generator),
        )
        afdcd = AfDCDLoss(6, 8, groups=4, pool=2, patch=2)(
            torch.randn(2, 6, 8, 8), torch.randn(2, 8, 8, 8), afdcd_keep_mask(2, 8, 8, 0.75, generator)
        )
        _, restore, masked = g2sd_keep_indices(2, 16, 0.75, generator)
        predictions = G2SDDecoder(6, 8, (4, 4), decoder_dim=16, depth=1, num_heads=2)(torch.randn(2, 5, 6), restore)
        g2sd = g2sd_loss(predictions, torch.randn(2, 16, 8), masked)
    for loss in (cwd, *vitkd.values(), *afdcd.values(), g2sd):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
