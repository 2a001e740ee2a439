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
