"""Export of trained segmenters (ONNX, precision conversion, TensorRT engines).

Importable as `gkd_deploy.exporters`; the export commands arrive with the deployment work and
depend only on `gkd_deploy` (never the other way round).
"""
