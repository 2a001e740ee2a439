"""What only a GPU shows: bf16 autocast training steps and CUDA inference (skipped without one)."""

import pytest
import torch

from gkd_deploy.distill.gkd import Distiller, ThreeTermObjective
from gkd_deploy.distill.masking import BatchRandom
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from gkd_deploy.training.loop import autocast_for

pytestmark = pytest.mark.gpu


def test_bf16_distillation_step_on_cuda_matches_fp32_closely():
    device = torch.device("cuda")
    student = create_encoder("tiny-student", img_size=128)
    teacher = create_encoder("tiny-teacher", img_size=128)
    distiller = Distiller(student, teacher, ThreeTermObjective(student.embed_dim, teacher.embed_dim)).to(device).train()
    images = torch.rand(4, 3, 128, 128, device=device) * 255
    with autocast_for(device):
        bf16 = distiller(images, BatchRandom.single(4))
    fp32 = distiller(images, BatchRandom.single(4))
    bf16["loss"].backward()
    assert torch.isfinite(bf16["loss"])
    assert bf16["loss"].item() == pytest.approx(fp32["loss"].item(), rel=0.05)
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_cuda_and_cpu_segmenters_agree():
    model = build_segmenter(SegmenterConfig("tiny-student", decoder="semfpn", img_size=64,
                                            decoder_options={"neck_channels": 32, "head_channels": 16, "groups": 4})).eval()
    images = torch.rand(2, 3, 64, 128) * 255
    with torch.no_grad():
        cpu = model(images)
        cuda = model.cuda()(images.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-2, atol=1e-2)  # TF32 convolutions on CUDA
