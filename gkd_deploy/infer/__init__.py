"""Run a segmenter over video, images, cameras and streams: `gkd infer`.

`infer(source, model)` opens the source (`sources`), fits frames to the model (`segment`), runs
decoding, inference and encoding as overlapping stages (`pipeline`) and writes annotated video,
colour masks and label maps (`render`, `sinks`).
"""

from gkd_deploy.infer.pipeline import InferStats, PipelineOptions, run_pipeline
from gkd_deploy.infer.runner import InferResult, InferSettings, default_output, infer

__all__ = ["InferResult", "InferSettings", "InferStats", "PipelineOptions", "default_output", "infer", "run_pipeline"]
