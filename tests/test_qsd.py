import pytest
import torch

from gkd_deploy.distill.qsd import QSDHead, reference_qsd


@pytest.mark.parametrize("tokens", [1, 17, 65])
def test_fused_qsd_matches_the_explicit_formulation_values_and_gradients(tokens):
    head = QSDHead(student_dim=24, teacher_dim=40).double()
    student = torch.randn(3, tokens, 24, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(3, tokens, 40, dtype=torch.double)
    fused = head(student, teacher)
    fused_grads = torch.autograd.grad(fused, [student, *head.parameters()])
    reference = reference_qsd(head, student, teacher)
    reference_grads = torch.autograd.grad(reference, [student, *head.parameters()])
    torch.testing.assert_close(fused.double(), reference, rtol=1e-6, atol=1e-7)
    for got, want in zip(fused_grads, reference_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_single_token_reduces_to_the_value_projection():
    head = QSDHead(8, 12)
    student, teacher = torch.randn(4, 1, 8), torch.randn(4, 1, 12)
    torch.testing.assert_close(head.retrieve(student, teacher), head.value(student))


def test_no_scale_no_temperature():
    # Keys scaled by 10 sharpen the softmax by exactly 10x in the logits: the formulation has no 1/sqrt(d).
    head = QSDHead(4, 4)
    with torch.no_grad():
        for projection in (head.query[1], head.value[1]):
            projection.weight.copy_(torch.eye(4))
            projection.bias.zero_()
    student = torch.randn(1, 5, 4)
    teacher = torch.randn(1, 5, 4)
    query = head.query(student)
    expected = torch.softmax(query @ teacher.transpose(1, 2), -1) @ head.value(student)
    torch.testing.assert_close(head.retrieve(student, teacher), expected)


def test_teacher_receives_no_gradient():
    head = QSDHead(8, 8)
    student = torch.randn(2, 5, 8, requires_grad=True)
    teacher = torch.randn(2, 5, 8, requires_grad=True)
    head(student, teacher.detach()).backward()
    assert teacher.grad is None and student.grad is not None


# --- token routing of the three terms, as the authors' code does it -----------------------------

def _explicit_qsd(head, student_tokens, teacher_tokens):
    """softmax(q @ v_t^T) @ v with the N x N attention written out (no fused kernel, no scale)."""
    query, value = head.query(student_tokens), head.value(student_tokens)
    return torch.softmax(query @ teacher_tokens.transpose(1, 2), dim=-1) @ value


def test_gkd_terms_route_tokens_as_the_authors_code():
    from gkd_deploy.distill.gkd import ThreeTermObjective
    from gkd_deploy.distill.masking import BatchRandom, first_images_mask
    from gkd_deploy.models.builder import create_encoder

    student = create_encoder("tiny-student", img_size=64).double()
    teacher = create_encoder("tiny-teacher", img_size=64).double().eval()
    objective = ThreeTermObjective(student.embed_dim, teacher.embed_dim).double()
    images = torch.rand(4, 3, 64, 64, dtype=torch.double) * 255
    losses = objective(student, teacher, images, BatchRandom.single(4, seed=3))
    fused = torch.autograd.grad(losses["loss"], list(student.parameters()) + list(objective.parameters()),
                                allow_unused=True)

    # The explicit routing: the first int(0.5 B) images masked; teacher on the clean image.
    mask = first_images_mask(4, 16, 0.5, 0.5, torch.Generator().manual_seed(3))
    assert mask[:2].any(1).all() and not mask[2:].any()
    with torch.no_grad():
        teacher_tokens = teacher.forward_tokens(images)
    teacher_cls, teacher_patches = teacher_tokens[:, :1], teacher_tokens[:, 1:]
    clean, masked = student.forward_tokens(images), student.forward_tokens(images, mask)
    heads = objective.heads
    # CLS term: the CLEAN pass's CLS through the token head; one key, so the softmax is 1 and only
    # the value projection is left.
    student_cls = heads["token"].value(clean[:, :1])
    token = ((student_cls - teacher_cls) ** 2).mean()
    # Feature term: attention over the clean PATCH tokens only; the CLS slot holds the token head's output.
    student_patches = _explicit_qsd(heads["feature"], clean[:, 1:], teacher_patches)
    feature = ((torch.cat([student_cls, student_patches], 1) - teacher_tokens) ** 2).mean()
    # Patch term: the masked pass, every patch, against the teacher's clean patches.
    patch = ((_explicit_qsd(heads["patch"], masked[:, 1:], teacher_patches) - teacher_patches) ** 2).mean()
    expected = {"token": token, "feature": feature, "patch": patch}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-10, atol=1e-12)
    reference = torch.autograd.grad(token + feature + patch, list(student.parameters()) + list(objective.parameters()),
                                    allow_unused=True)
    for got, want in zip(fused, reference):
        if want is None:  # the token head's query: with one key its gradient is zero (up to rounding)
            assert got is None or got.abs().max() < 1e-12
        else:
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


def test_proteus_patch_term_scores_the_masked_patches_only():
    from gkd_deploy.distill.gkd import ThreeTermObjective
    from gkd_deploy.distill.masking import BatchRandom, first_images_mask
    from gkd_deploy.models.builder import create_encoder

    student = create_encoder("tiny-student", img_size=64).double()
    teacher = create_encoder("tiny-teacher", img_size=64).double().eval()
    objective = ThreeTermObjective(student.embed_dim, teacher.embed_dim, head="projection",
                                   patch_term="masked").double()
    images = torch.rand(4, 3, 64, 64, dtype=torch.double) * 255
    losses = objective(student, teacher, images, BatchRandom.single(4, seed=1))
    mask = first_images_mask(4, 16, 0.5, 0.5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        teacher_patches = teacher.forward_tokens(images)[:, 1:]
    recovered = objective.heads["patch"].value(student.forward_tokens(images, mask)[:, 1:])
    expected = ((recovered[mask] - teacher_patches[mask]) ** 2).mean()
    torch.testing.assert_close(losses["patch"], expected, rtol=1e-10, atol=1e-12)
