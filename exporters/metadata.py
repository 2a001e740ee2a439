"""What every exported ONNX file says about itself, stored in its `metadata_props`.

A deployed file must be usable without the checkpoint or the training run: class names and
colours, the input it expects, the architecture config, its precision and where it came from all
travel inside it (the Ultralytics habit). They are one JSON object under the key `gkd` — the
layout is defined in `gkd_deploy.runtime.metadata` (the runtime reads it); this module builds it
from a segmenter. `read_metadata` reads it back.
"""

from __future__ import annotations

from pathlib import Path

from gkd_deploy.errors import ModelError
from gkd_deploy.errors import ExportError
from gkd_deploy.runtime.onnx_io import load_model
from gkd_deploy.models.segmenter import Segmenter
from gkd_deploy.runtime.metadata import (  # noqa: F401  (re-exported: the exporters' vocabulary)
    INPUT_NAME, LAYOUT, METADATA_KEY, OUTPUT_NAMES, ExportMetadata, embed_metadata, metadata_of,
)

def metadata_for(
    segmenter: Segmenter,
    input_size: tuple[int, int],
    source_checkpoint: str | Path | None = None,
    source_sha256: str | None = None,
) -> ExportMetadata:
    """fp32 metadata of `segmenter` exported at `input_size` (height, width)."""
    class_set = segmenter.class_set
    encoder = segmenter.encoder
    # The graph divides 0-255 pixels by these itself; recorded so a reader knows what not to redo.
    normalisation = {"mean": encoder.pixel_mean.flatten().tolist(), "std": encoder.pixel_std.flatten().tolist(),
                     "range": "0-255"}
    return ExportMetadata(
        precision="fp32",
        input_size=(int(input_size[0]), int(input_size[1])),
        class_names=tuple(class_set.names),
        palette=tuple(tuple(int(v) for v in colour) for colour in class_set.palette),
        segmenter=segmenter.config.to_dict(),
        source_checkpoint=str(Path(source_checkpoint).resolve()) if source_checkpoint is not None else None,
        source_sha256=source_sha256,
        extra={"normalisation": normalisation},
    )


def read_metadata(path: str | Path) -> ExportMetadata:
    """The gkd metadata of an exported ONNX file; `ExportError` for a non-ONNX or foreign file."""
    model = load_model(path, load_external_data=False)
    try:
        return metadata_of(model, str(path))
    except ModelError as error:
        raise ExportError(str(error)) from None
