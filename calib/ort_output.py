"""Keeping onnxruntime's quantization chatter out of the terminal, which belongs to the CLI."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator

log = logging.getLogger(__name__)

# onnxruntime logs this through the root logger on every quantization. Its pre-processing
# (`quant_pre_process`) targets CPU inference; its symbolic shape inference fails on the traced
# ViT graph, and TensorRT optimises the graph itself.
_PRE_PROCESSING_ADVICE = ("Please consider to run pre-processing", "Please consider pre-processing")


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Route onnxruntime's progress `print`s to our debug log and drop its pre-processing advice."""
    captured = io.StringIO()
    advice = _DropMessages(_PRE_PROCESSING_ADVICE)
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        root.removeFilter(advice)
        for line in captured.getvalue().splitlines():
            log.debug("onnxruntime: %s", line)
