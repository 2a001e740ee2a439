"""Reading and writing ONNX files: one place that sets the IR version, checks and writes atomically.

Every file gkd-deploy writes (fp32 export, fp16 conversion, int8 quantization) goes through
`save_model`, so all of them load in the onnxruntime and TensorRT versions we support.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from gkd_deploy.errors import ExportError
from gkd_deploy.fileio import atomic_path


def minimal_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version that holds the model's operator sets (8 for opset 17).

    onnx 1.23 stamps models it builds with IR version 14, which onnxruntime 1.31 refuses ("max
    supported IR version: 13"), and TensorRT 10's parser on a Jetson lags further behind. The
    lowest version the opsets allow is the one every consumer reads.
    """
    return onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Set the IR version, run the ONNX checker and write `model` to `path` in one rename.

    A model the checker rejects is never written; an interrupted write leaves no file at `path`
    (or the previous one, untouched).
    """
    path = Path(path)
    model.ir_version = minimal_ir_version(model)
    try:
        # full_check adds strict type and shape inference: it catches a Cast a converter got wrong.
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"the ONNX model for {path} fails the ONNX checker: {error}") from None
    try:
        with atomic_path(path) as temporary:
            onnx.save_model(model, str(temporary))
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error}; choose a writable output path") from None
    return path


def load_model(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file, or raise an `ExportError` that says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {path} not found")
    try:
        model = onnx.load_model(str(path), load_external_data=load_external_data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ExportError(f"{path} is not an ONNX model ({error})") from None
    except OSError as error:
        raise ExportError(f"cannot read {path}: {error}") from None
    # Protobuf parses many byte strings as a message with no fields set; a real model has a graph.
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.output:
        raise ExportError(f"{path} is not an ONNX model (no IR version or graph in it)")
    return model
