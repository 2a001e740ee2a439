"""Export of trained segmenters: ONNX files that carry their own metadata, fp16 conversion, the
parity check of an exported file against PyTorch, and TensorRT engines built from those files.

Importable as `gkd_deploy.exporters`; depends on `gkd_deploy` and on `gkd_deploy.calib` (int8
explicit Q/DQ quantization), never the other way round.

    export_model(run_or_checkpoint, precisions=, formats=, calib=, ...)     `gkd export`: all of it
    export_onnx(segmenter, path, input_size=, opset=, source_checkpoint=)  fp32 .onnx
    convert_fp16(fp32_onnx, out_path)                                       fp16 .onnx
    read_onnx_metadata(path) -> ExportMetadata                              what a file says about itself
                                                                            (gkd_deploy.runtime.metadata)
    check_parity(onnx_path, segmenter, images) -> ParityReport              exported vs PyTorch
    assert_parity(report)                                                   ExportError over tolerance
    build_engine(onnx_path, engine_path, options)                           TensorRT (optional)
"""

from gkd_deploy.exporters.check import ParityReport, assert_parity, check_parity
from gkd_deploy.errors import ExportError
from gkd_deploy.exporters.fp16 import convert_fp16
from gkd_deploy.runtime.metadata import ExportMetadata, read_onnx_metadata
from gkd_deploy.exporters.onnx_export import export_onnx

__all__ = [
    "ExportError",
    "ExportMetadata",
    "ParityReport",
    "assert_parity",
    "check_parity",
    "convert_fp16",
    "export_onnx",
    "read_onnx_metadata",
]
