"""Run a segmenter over video, images, cameras and streams: `gkd infer`.

`infer(source, model)` opens the source (`sources`), fits frames to the model (`segment`), runs
decoding, inference and encoding as overlapping stages (`pipeline`) and writes annotated video,
colour masks and label maps (`render`, `sinks`). An instance model's frames give their instances
(`instances`: kept above a score threshold, written as Cityscapes instance ids), drawn one colour
per instance (`render_instances`).
"""

import importlib

MODES = ("resize", "slide")  # how frames fit the model (see `segment`)
DEFAULT_SCORE_THRESHOLD = 0.5  # an instance model's instances scoring less are not drawn (see `instances`)

# Names are imported on first use (PEP 562), so that `gkd --help` does not load OpenCV and numpy.
_HOMES = {"InferStats": "pipeline", "PipelineOptions": "pipeline", "run_pipeline": "pipeline",
          "InferResult": "runner", "InferSettings": "runner", "InferStart": "runner", "default_output": "runner",
          "infer": "runner"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
