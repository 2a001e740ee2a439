"""Parity of an exported file with its PyTorch segmenter on real images (onnxruntime, CPU).

Semantic files: class scores and label maps (`check_parity`). Instance files: the K instances of
every image matched to PyTorch's by class and mask IoU, not slot by slot (near-equal scores swap
slots under int8 or fp16 noise): the share of PyTorch's and the file's instances found in the
other, their mean mask IoU and largest score difference (`check_instance_parity`, measured by
`runtime.agreement.InstanceAgreement`), held to the precision table's `instance_parity`.

"It runs" is not a check: an export can load and still compute something else (a wrong
scale, a broken Q/DQ pair). `check_parity` runs both on the same images and measures how far
the scores and the label maps drift; `assert_parity` fails when the drift is over what the
file's precision explains (the tolerances of `gkd_deploy.precision.PRECISIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gkd_deploy.errors import ExportError, ModelError
from gkd_deploy.models.instance_segmenter import InstanceSegmenter
from gkd_deploy.models.segmenter import Segmenter
from gkd_deploy.precision import EXPORT_PRECISIONS, PRECISIONS, InstanceTolerance, Tolerance
from gkd_deploy.runtime.agreement import MIN_MATCH_IOU, compare_instance_predictors, compare_predictors
from gkd_deploy.runtime.metadata import read_onnx_metadata
from gkd_deploy.runtime.onnxruntime_backend import (OnnxRuntimeInstancePredictor, OnnxRuntimePredictor,
                                                    runs_qdq_as_written)
from gkd_deploy.runtime.torch_backend import TorchInstancePredictor, TorchPredictor


@dataclass(frozen=True)
class ParityReport:
    """Exported vs PyTorch on `images` images (`pixels` label pixels in all).

    `max_abs_diff` / `mean_abs_diff`: over all class scores (None for a labels-only file);
    `pixel_agreement`: percent of pixels whose label is the same (the file's labels output where it
    has one, else the argmax of its scores, against PyTorch's argmax). For an instance file
    (`kind` "instances", `runtime.agreement.InstanceAgreement`): `instances` is the number of instances of either
    side that the other must have, `matched` the percent of them found, `pixel_agreement` the
    mean mask IoU of the found pairs (percent) and the score differences are theirs; `pixels`
    is the image pixels checked.
    """

    precision: str
    images: int
    pixels: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    pixel_agreement: float
    kind: str = "labels"
    instances: int = 0
    matched: float = 100.0

    def __str__(self) -> str:
        if self.kind == "instances":
            return (f"{self.precision}: {self.matched:.2f}% of {self.instances} instances found (same class, mask IoU "
                    f">= {MIN_MATCH_IOU}), mean mask IoU {self.pixel_agreement:.2f}%, max |score difference| "
                    f"{self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g}) ({self.images} images)")
        scores = ("labels only" if self.max_abs_diff is None else
                  f"max |score difference| {self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g})")
        return (f"{self.precision}: {scores}, {self.kind} agree on {self.pixel_agreement:.2f}% of {self.pixels} pixels "
                f"({self.images} images)")


def check_parity(onnx_path: str | Path, segmenter: Segmenter, images: torch.Tensor | np.ndarray,
                 *, batch_size: int = 4) -> ParityReport:
    """Run the ONNX file (onnxruntime CPU) and `segmenter` (on its device) on `images`, both
    through the runtime's predictors and compared by `compare_predictors`.

    `images`: (N, 3, H, W) RGB in 0..255, (H, W) the file's input size.
    """
    exported, images = _prepare(OnnxRuntimePredictor, onnx_path, images)
    was_training = segmenter.training
    segmenter.eval()
    try:
        agreement = compare_predictors(TorchPredictor.of_model(segmenter), exported, images, batch_size)
    finally:
        segmenter.train(was_training)
    return ParityReport(precision=exported.info.precision, images=agreement.images, pixels=agreement.pixels,
                        max_abs_diff=agreement.max_abs_diff, mean_abs_diff=agreement.mean_abs_diff,
                        pixel_agreement=agreement.pixel_agreement)


def _prepare(predictor_class, onnx_path: str | Path, images, **options) -> tuple:
    """The file's CPU predictor (`options` for its session), and the images as float32 numpy
    (checked against its input size)."""
    try:
        exported = predictor_class(onnx_path, "cpu", **options)
    except ModelError as error:
        raise ExportError(str(error)) from None
    images = np.asarray(torch.as_tensor(images).float().cpu())
    expected = (3, *exported.info.input_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
        raise ExportError(f"parity images must be (N, {', '.join(map(str, expected))}) to match {onnx_path}; "
                          f"got {tuple(images.shape)}")
    return exported, images


def check_instance_parity(onnx_path: str | Path, model: InstanceSegmenter, images: torch.Tensor | np.ndarray,
                          *, batch_size: int = 4) -> ParityReport:
    """Run an instance ONNX file (its runtime predictor, CPU) and `model.predict` on `images` (N, 3, H, W)
    0..255 and match their instances (`InstanceAgreement`, with the file's precision's score
    tolerance as the margin at the top-k cut). An int8 file for TensorRT runs its Q/DQ pairs as
    written (`runs_qdq_as_written`)."""
    exported, images = _prepare(OnnxRuntimeInstancePredictor, onnx_path, images,
                                as_written=runs_qdq_as_written(read_onnx_metadata(onnx_path)))
    was_training = model.training
    model.eval()
    tolerance = PRECISIONS[exported.info.precision].instance_parity
    try:
        agreement = compare_instance_predictors(TorchInstancePredictor.of_model(model), exported, images,
                                                margin=tolerance.max_score_diff if tolerance else 0.0,
                                                mask_threshold=model.config.mask_threshold, batch_size=batch_size)
    finally:
        model.train(was_training)
    return ParityReport(precision=exported.info.precision, images=int(images.shape[0]),
                        pixels=int(images.shape[0] * images.shape[2] * images.shape[3]),
                        max_abs_diff=agreement.max_abs_diff, mean_abs_diff=agreement.mean_abs_diff,
                        pixel_agreement=agreement.mask_iou, kind="instances", instances=agreement.required,
                        matched=agreement.matched)


def assert_parity(report: ParityReport, precision: str | None = None,
                  tolerance: Tolerance | InstanceTolerance | None = None) -> None:
    """Raise `ExportError` when `report` is over the tolerance of `precision` (default: the report's)."""
    precision = precision or report.precision
    instances = report.kind == "instances"
    if tolerance is None:
        row = PRECISIONS.get(precision)
        tolerance = None if row is None else row.instance_parity if instances else row.parity
        if tolerance is None:
            raise ExportError(f"no parity tolerance for {report.kind} at precision {precision!r}; known: "
                              f"{', '.join(p for p in EXPORT_PRECISIONS if PRECISIONS[p].parity)}")
    problems = (tolerance.problems(report.max_abs_diff, report.matched, report.pixel_agreement) if instances
                else tolerance.problems(report.max_abs_diff, report.pixel_agreement))
    if problems:
        raise ExportError(f"the {precision} export does not match PyTorch: {'; '.join(problems)} ({report}); "
                          "the file computes something other than the checkpoint; do not deploy it")


# The check of each task's files (`ExportMetadata.task`).
PARITY_CHECKS = {"semantic": check_parity, "instance": check_instance_parity}
