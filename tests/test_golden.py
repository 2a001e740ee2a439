"""Golden values: numbers pinned for seeded tiny models, losses and the synthetic generator, so that
an upgrade of torch, timm, numpy, OpenCV or onnxruntime that changes results fails here first.

Every value was recorded on CPU, float32, one thread, deterministic algorithms, with

    torch 2.15.0, timm 1.0.31, numpy 2.4.6, opencv 5.0.0, onnx 1.23.2, onnxruntime 1.32.0

A failure means the results changed. Find out why before updating a number: a new version that
initialises or computes differently (read its release notes), or a change of ours to the models,
losses, training loop or renderer. Update the pinned value only once the new one is understood, and
write the versions it was recorded with above. Float summaries are compared at 1e-5 of the
tensor's own scale (sums of absolute values relative, signed sums and single elements against the
mean absolute value, since a signed sum can cancel); hashes of uint8 arrays exactly.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from gkd_deploy.models.segmenter import SegmenterConfig, build_segmenter
from tests.fixtures_models import SMALL_FPN

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL = 1e-5
TINY_MASK2FORMER = {"hidden_dim": 32, "num_queries": 6, "dec_layers": 2, "pixel_layers": 1, "num_heads": 4,
                    "num_points_deform": 2, "dim_feedforward": 64, "pixel_ffn": 64, "groups": 4}


@pytest.fixture(autouse=True)
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def street_pattern(batch: int = 2, size: int = 64) -> torch.Tensor:
    """(batch, 3, size, size) float32 in 0..255 from integer arithmetic only: the input does not
    depend on any random generator, so a changed golden value points at the model, not the input."""
    b, c, y, x = np.meshgrid(np.arange(batch), np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    return torch.from_numpy(((x * 7 + y * 13 + c * 61 + b * 29 + x * y) % 256).astype(np.float32))


def fingerprint(tensor: torch.Tensor) -> dict:
    """Summary numbers of a float tensor, accumulated in float64."""
    values = tensor.detach().double().flatten()
    picks = np.linspace(0, values.numel() - 1, 5).round().astype(int)  # spread out: first ones can be all zeros
    return {"shape": tuple(tensor.shape), "sum": float(values.sum()), "abs_sum": float(values.abs().sum()),
            "picks": [float(values[i]) for i in picks]}


def assert_fingerprint(actual: dict, expected: dict) -> None:
    assert actual["shape"] == expected["shape"]
    assert actual["abs_sum"] == pytest.approx(expected["abs_sum"], rel=RTOL)
    scale = expected["abs_sum"] / np.prod(expected["shape"])  # the mean absolute value
    assert actual["sum"] == pytest.approx(expected["sum"], abs=RTOL * expected["abs_sum"])
    assert actual["picks"] == pytest.approx(expected["picks"], abs=RTOL * scale)


def sha256(array: np.ndarray) -> str:
    assert array.dtype == np.uint8
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def parameter_fingerprint(module: torch.nn.Module) -> dict:
    return fingerprint(torch.cat([p.detach().flatten() for p in module.parameters()]))


def tiny_segmenter(decoder: str, options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_segmenter(SegmenterConfig("tiny-student", decoder=decoder, img_size=64,
                                           decoder_options=options)).eval()


# --- the values -----------------------------------------------------------------------------------

GOLDEN: dict[str, dict] = {
    "semfpn": {
        "weights": {"shape": (321699,), "sum": 679.912912, "abs_sum": 9998.45618,
                    "picks": [0, 0.0106273312, -0.00911420584, -0.0316793658, 0]},
        "scores": {"shape": (2, 19, 64, 64), "sum": -1413.17154, "abs_sum": 7847.57912,
                   "picks": [-0.0636896491, 0.148958936, -0.0383264273, 0.0267784651, 0.0561602712]},
    },
    "mask2former": {
        "weights": {"shape": (308316,), "sum": 1052.42486, "abs_sum": 11354.9281,
                    "picks": [0, -0.00651710434, 0.0215793177, -0.00938292406, 0.173614308]},
        "scores": {"shape": (2, 19, 64, 64), "sum": 25719.9037, "abs_sum": 25719.9037,
                   "picks": [0.165095925, 0.0753026381, 0.132258415, 0.0948703289, 0.0706053376]},
    },
    "qsd": {
        "loss": 4.62512636,
        "student_grad": {"shape": (2, 17, 24), "sum": -1.29584805e-08, "abs_sum": 3.01242691,
                         "picks": [-0.00166238239, -0.00178144639, 0.00152220379, 0.00997455418, 0.00718494831]},
        "head_weights": {"shape": (2096,), "sum": 46.5672828, "abs_sum": 254.318694,
                         "picks": [1, -0.174342707, 1, -0.173689783, 0.153795213]},
    },
    "training_step": {
        "loss": 3.93949366, "feature": 1.26099157, "patch": 1.25758064,
        "token": 1.42092133, "grad_norm": 25.177103,
        "student_before": {"shape": (250496,), "sum": 583.681214, "abs_sum": 4615.44789,
                           "picks": [0, -0.0287808571, 0.00507745333, -0.0146212755, 0]},
        "student_update": {"shape": (250496,), "sum": 1.35308505, "abs_sum": 250.052572,
                           "picks": [0.000999998767, -0.000998552889, -0.00100003043, 0.00100071356, 0.000999961863]},
    },
    "synthetic": {
        "label_sha256": "01f4f812944e7d0776eaf96ddc8425d174f30e0bfc6c4acc4a8e8ef2143ae7ff",
        "clear_image_sha256": "8fc8710c52c4d6fe03c9ff04a9f7677030b3eb61597c38fb0a7039d984195734",
        "fog_image_sha256": "018a2dbe7ada0755f8d3550ab22000cc46f50b08a7e06e8684d72dac8d34389d",
    },
    "onnx": {
        "scores": {"shape": (2, 19, 64, 64), "sum": -1413.17147, "abs_sum": 7847.5785,
                   "picks": [-0.0636896864, 0.148958862, -0.0383264981, 0.0267785154, 0.0561602116]},
    },
}


# --- the tests ------------------------------------------------------------------------------------

def segmenter_golden(name: str, decoder: str, options: dict) -> None:
    segmenter = tiny_segmenter(decoder, options)
    with torch.no_grad():
        scores = segmenter(street_pattern())
    golden = GOLDEN[name]
    assert_fingerprint(parameter_fingerprint(segmenter), golden["weights"])
    assert_fingerprint(fingerprint(scores), golden["scores"])


def test_semfpn_segmenter_golden():
    """tiny-student + SemFPN at 64 x 64, seed 0: the initial weights (timm's and ours) and the scores
    on a fixed input. Changed: initialisation or the forward pass changed; check why before updating.
    Recorded with torch 2.15.0, timm 1.0.31, numpy 2.4.6."""
    segmenter_golden("semfpn", "semfpn", SMALL_FPN)


def test_mask2former_segmenter_golden():
    """tiny-student + a small Mask2Former at 64 x 64, seed 0: initial weights and per-pixel scores
    (queries' classes x masks, deformable attention). Changed: check why before updating.
    Recorded with torch 2.15.0, timm 1.0.31, numpy 2.4.6."""
    segmenter_golden("mask2former", "mask2former", TINY_MASK2FORMER)


def test_qsd_loss_golden():
    """The QSD loss and its gradient for a seeded head on fixed tokens (the fused attention kernel).
    Changed: scaled_dot_product_attention, LayerNorm or Linear init changed; check why before updating.
    Recorded with torch 2.15.0."""
    from gkd_deploy.distill.qsd import QSDHead

    torch.manual_seed(0)
    head = QSDHead(student_dim=24, teacher_dim=40)
    positions = torch.arange(2 * 17 * 24, dtype=torch.float32).reshape(2, 17, 24)
    student_tokens = torch.sin(positions * 0.37).requires_grad_(True)
    teacher_tokens = torch.cos(torch.arange(2 * 17 * 40, dtype=torch.float32).reshape(2, 17, 40) * 0.11) * 3
    loss = head(student_tokens, teacher_tokens)
    loss.backward()
    golden = GOLDEN["qsd"]
    assert float(loss.detach()) == pytest.approx(golden["loss"], rel=RTOL)
    assert_fingerprint(fingerprint(student_tokens.grad), golden["student_grad"])
    assert_fingerprint(parameter_fingerprint(head), golden["head_weights"])


def one_distillation_step() -> tuple[dict[str, float], torch.Tensor, torch.nn.Module]:
    """Stage 2 in miniature: tiny-teacher -> tiny-student, GKD's three QSD terms, AdamW, one step
    of the shared training loop. Returns the loop's metrics, the student's weights before, the student."""
    from gkd_deploy.distill.gkd import Distiller, ThreeTermObjective
    from gkd_deploy.distill.masking import BatchRandom
    from gkd_deploy.models.builder import create_encoder
    from gkd_deploy.training.distributed import Context
    from gkd_deploy.training.loop import LoopSpec, NoCallbacks, run_loop
    from gkd_deploy.training.optim import adamw

    torch.manual_seed(0)
    student = create_encoder("tiny-student", img_size=64)
    teacher = create_encoder("tiny-teacher", img_size=64)
    distiller = Distiller(student, teacher, ThreeTermObjective(student.embed_dim, teacher.embed_dim)).train()
    trained = distiller.trainable_modules()
    optimizer = adamw(trained, lr=1e-3, weight_decay=0.05)
    before = torch.cat([p.detach().flatten().clone() for p in student.parameters()])
    spec = LoopSpec(stage=2, total_steps=1, start_step=0, global_batch=2, lr_at=lambda step: 1e-3, clip_grad=1.0,
                    log_every=1, checkpoint_every=1, seed=0, autocast="off")
    metrics = run_loop(spec, batches=[{"image": street_pattern()}],
                       compute_losses=lambda batch, step: distiller(batch["image"], BatchRandom.single(2, seed=step)),
                       optimizer=optimizer, parameters=[p for p in trained.parameters() if p.requires_grad],
                       after_step=lambda step: None, save_state=lambda step: None, context=Context(),
                       callbacks=NoCallbacks())
    return metrics, before, student


def test_one_training_step_golden():
    """One step of the training loop (GKD's three-term QSD loss, masking, clipping, AdamW): the
    losses, the gradient norm and the change of the student's weights. Changed: the loss, the
    optimiser or the loop's seeding changed; check why before updating.
    Recorded with torch 2.15.0, timm 1.0.31, numpy 2.4.6."""
    metrics, before, student = one_distillation_step()
    after = torch.cat([p.detach().flatten() for p in student.parameters()])
    golden = GOLDEN["training_step"]
    for name in ("loss", "feature", "patch", "token", "grad_norm"):
        assert metrics[name] == pytest.approx(golden[name], rel=RTOL), name
    assert_fingerprint(fingerprint(before), golden["student_before"])
    assert_fingerprint(fingerprint(after - before), golden["student_update"])


@pytest.mark.parametrize("style", ["clear", "fog"])
def test_synthetic_scene_golden(style):
    """The built-in generator's first scene (seed 0, 128 x 64) in the source style and one target
    style, byte for byte. Changed: numpy's generators, OpenCV's drawing or our renderer changed;
    the synthetic data sets are then different data. Check why before updating.
    Recorded with numpy 2.4.6, opencv 5.0.0."""
    from gkd_deploy.data.synthetic import render_scene

    image, label = render_scene(0, (128, 64), style)
    assert image.shape == (64, 128, 3) and label.shape == (64, 128)
    golden = GOLDEN["synthetic"]
    assert sha256(label) == golden["label_sha256"]  # the label map does not depend on the style
    assert sha256(image) == golden[f"{style}_image_sha256"]


def test_onnx_export_golden(tmp_path):
    """The fp32 ONNX export of the SemFPN segmenter above, run by onnxruntime on the same input:
    its scores, and its in-graph labels as the argmax of those scores. Changed: the exporter, the graph
    or onnxruntime's kernels changed; check why before updating.
    Recorded with torch 2.15.0, timm 1.0.31, onnx 1.23.2, onnxruntime 1.32.0."""
    import onnxruntime as ort

    from gkd_deploy.exporters import export_onnx

    path = export_onnx(tiny_segmenter("semfpn", SMALL_FPN), tmp_path / "model-fp32.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    scores, labels = session.run(None, {"images": street_pattern().numpy()})
    assert_fingerprint(fingerprint(torch.from_numpy(scores)), GOLDEN["onnx"]["scores"])
    # Random weights leave near-ties between classes, so the labels are checked against the file's
    # own scores, not hashed: a hash would flip with the last bit of a score.
    assert labels.dtype == np.uint8 and np.array_equal(labels, scores.argmax(1))
