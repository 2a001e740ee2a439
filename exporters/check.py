"""Parity of an exported file with its PyTorch segmenter on real images (onnxruntime, CPU).

Semantic files: class scores and label maps (`check_parity`). Instance files: the K instances of
every image, slot by slot (the graph and PyTorch run the same post-processing): the share of mask
pixels that agree and the largest score difference (`check_instance_parity`), held to the
precision table's `instance_parity`.

"It runs" is not a check: an export can load and still compute something else (a wrong
scale, a broken Q/DQ pair). `check_parity` runs both on the same images and measures how far
the scores and the label maps drift; `assert_parity` fails when the drift is over what the
file's precision explains (the tolerances of `gkd_deploy.precision.PRECISIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gkd_deploy.errors import ExportError
from gkd_deploy.precision import EXPORT_PRECISIONS, PRECISIONS, Tolerance
from gkd_deploy.models.instance_segmenter import InstanceSegmenter
from gkd_deploy.models.segmenter import Segmenter
from gkd_deploy.runtime.metadata import ExportMetadata, read_onnx_metadata


@dataclass(frozen=True)
class ParityReport:
    """Exported vs PyTorch on `images` images (`pixels` label pixels in all).

    `max_abs_diff` / `mean_abs_diff`: over all class scores (None for a labels-only file);
    `pixel_agreement`: percent of pixels whose label is the same (the file's labels output where it
    has one, else the argmax of its scores, against PyTorch's argmax). For an instance file
    (`kind` "masks"): the scores are the K instance scores, `pixels` the mask pixels of all K
    instances and `pixel_agreement` the percent of them whose mask value is the same.
    """

    precision: str
    images: int
    pixels: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    pixel_agreement: float
    kind: str = "labels"

    def __str__(self) -> str:
        scores = ("labels only" if self.max_abs_diff is None else
                  f"max |score difference| {self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g})")
        return (f"{self.precision}: {scores}, {self.kind} agree on {self.pixel_agreement:.2f}% of {self.pixels} pixels "
                f"({self.images} images)")


def check_parity(onnx_path: str | Path, segmenter: Segmenter, images: torch.Tensor | np.ndarray,
                 *, batch_size: int = 4) -> ParityReport:
    """Run the ONNX file (onnxruntime CPU) and `segmenter` (on its device) on `images`.

    `images`: (N, 3, H, W) RGB in 0..255, (H, W) the file's input size.
    """
    metadata, images, session = _prepare(onnx_path, images)
    names = [output.name for output in session.get_outputs()]
    device = next(segmenter.parameters()).device
    was_training = segmenter.training
    segmenter.eval()
    max_diff, diff_sum, agree, scores_count = 0.0, 0.0, 0, 0
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            outputs = dict(zip(names, session.run(names, {metadata.input_name: np.ascontiguousarray(batch.numpy())})))
            with torch.inference_mode():
                reference = segmenter(batch.to(device)).float().cpu().numpy()
            if "scores" in outputs:
                difference = np.abs(outputs["scores"].astype(np.float64) - reference)
                max_diff = max(max_diff, float(difference.max()))
                diff_sum += float(difference.sum())
                scores_count += difference.size
            labels = outputs["labels"] if "labels" in outputs else outputs["scores"].argmax(axis=1)
            agree += int((labels == reference.argmax(axis=1)).sum())
    finally:
        segmenter.train(was_training)
    pixels = images.shape[0] * images.shape[2] * images.shape[3]
    return ParityReport(precision=metadata.precision, images=int(images.shape[0]), pixels=int(pixels),
                        max_abs_diff=max_diff if scores_count else None,
                        mean_abs_diff=diff_sum / scores_count if scores_count else None,
                        pixel_agreement=100.0 * agree / pixels)


def _prepare(onnx_path: str | Path, images) -> tuple[ExportMetadata, torch.Tensor, ort.InferenceSession]:
    """The file's metadata, the images as a float tensor (checked against its input size), a CPU session."""
    metadata = read_onnx_metadata(onnx_path)
    images = torch.as_tensor(images).float().cpu()
    expected = (3, *metadata.input_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
        raise ExportError(f"parity images must be (N, {', '.join(map(str, expected))}) to match {onnx_path}; "
                          f"got {tuple(images.shape)}")
    return metadata, images, _session(onnx_path)


def check_instance_parity(onnx_path: str | Path, model: InstanceSegmenter, images: torch.Tensor | np.ndarray,
                          *, batch_size: int = 4) -> ParityReport:
    """Run an instance ONNX file (onnxruntime CPU) and `model.predict` on `images` (N, 3, H, W) 0..255
    and compare their K instances slot by slot: mask pixels and scores."""
    metadata, images, session = _prepare(onnx_path, images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    max_diff, diff_sum, agree, mask_pixels, slots = 0.0, 0.0, 0, 0, 0
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            masks, _, scores = session.run(["masks", "classes", "scores"],
                                           {metadata.input_name: np.ascontiguousarray(batch.numpy())})
            with torch.inference_mode():
                reference_masks, _, reference_scores = (t.cpu().numpy() for t in model.predict(batch.to(device)))
            difference = np.abs(scores.astype(np.float64) - reference_scores)
            max_diff, diff_sum, slots = max(max_diff, float(difference.max())), diff_sum + float(difference.sum()), \
                slots + difference.size
            agree += int((masks.astype(bool) == reference_masks).sum())
            mask_pixels += reference_masks.size
    finally:
        model.train(was_training)
    return ParityReport(precision=metadata.precision, images=int(images.shape[0]), pixels=int(mask_pixels),
                        max_abs_diff=max_diff, mean_abs_diff=diff_sum / slots,
                        pixel_agreement=100.0 * agree / mask_pixels, kind="masks")


def assert_parity(report: ParityReport, precision: str | None = None,
                  tolerance: Tolerance | None = None) -> None:
    """Raise `ExportError` when `report` is over the tolerance of `precision` (default: the report's)."""
    precision = precision or report.precision
    if tolerance is None:
        row = PRECISIONS.get(precision)
        tolerance = None if row is None else row.instance_parity if report.kind == "masks" else row.parity
        if tolerance is None:
            raise ExportError(f"no parity tolerance for {report.kind} at precision {precision!r}; known: "
                              f"{', '.join(p for p in EXPORT_PRECISIONS if PRECISIONS[p].parity)}")
    problems = tolerance.problems(report.max_abs_diff, report.pixel_agreement)
    if problems:
        raise ExportError(f"the {precision} export does not match PyTorch: {'; '.join(problems)} ({report}); "
                          "the file computes something other than the checkpoint; do not deploy it")


def _session(onnx_path: str | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about unused initializers it removes itself
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except (RuntimeError, ValueError) as error:
        raise ExportError(f"onnxruntime cannot load {onnx_path}: {error}") from None


# The check of each task's files (`ExportMetadata.task`).
PARITY_CHECKS = {"semantic": check_parity, "instance": check_instance_parity}
