"""Which outputs an exported file returns: `gkd export --outputs labels|scores|both`.

Every file is traced with both outputs, `scores` (B, K, H, W) float32 and `labels` (B, H, W)
uint8 (the argmax inside the graph): the fp16 and int8 conversions and the parity check need the
scores. A file meant for an application that only wants labels then drops the scores output (and
with it nothing but the output itself: the argmax needs the scores inside the graph), so an edge
device copies H x W bytes back per image instead of K x H x W floats. A labels-only file cannot be
scored with overlapping sliding windows (`gkd validate`, `gkd eval`): validate the `both` export.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.utils

from gkd_deploy.errors import ConfigError
from gkd_deploy.runtime.metadata import OUTPUT_CHOICES, embed_metadata, metadata_of
from gkd_deploy.runtime.onnx_io import load_model, save_model

# Bytes per output element.
_ITEM_BYTES = {"scores": 4, "labels": 1}


def output_names(choice: str) -> tuple[str, ...]:
    """`--outputs` value -> the output names; ConfigError for anything else."""
    if choice not in OUTPUT_CHOICES:
        raise ConfigError(f"unknown --outputs {choice!r}; choose from {', '.join(OUTPUT_CHOICES)}")
    return OUTPUT_CHOICES[choice]


def output_bytes(names: tuple[str, ...], num_classes: int, input_size: tuple[int, int]) -> int:
    """Bytes the outputs `names` hold for one image of `input_size` (height, width)."""
    pixels = input_size[0] * input_size[1]
    return sum(_ITEM_BYTES[name] * pixels * (num_classes if name == "scores" else 1) for name in names)


def instance_output_bytes(top_k: int, input_size: tuple[int, int]) -> int:
    """Bytes of an instance file's outputs for one image: K uint8 masks, K int64 classes, K float32 scores."""
    return top_k * (input_size[0] * input_size[1] + 8 + 4)


def keep_outputs(path: str | Path, names: tuple[str, ...], out_path: str | Path | None = None) -> Path:
    """The exported ONNX file at `path` returning only `names`, written (atomically) to `out_path`
    (default: in place), its metadata updated; `onnx.utils.Extractor` keeps only what those outputs need."""
    out_path = Path(out_path or path)
    model = load_model(path)
    metadata = metadata_of(model, str(path))
    present = [output.name for output in model.graph.output]
    if tuple(present) == tuple(names):
        return Path(path) if out_path == Path(path) else save_model(model, out_path)
    missing = [name for name in names if name not in present]
    if missing:
        raise ConfigError(f"{path} has no output {', '.join(missing)} (it has {', '.join(present)})")
    kept = onnx.utils.Extractor(model).extract_model([item.name for item in model.graph.input], list(names))
    embed_metadata(kept, metadata.with_outputs(names))
    return save_model(kept, out_path)
