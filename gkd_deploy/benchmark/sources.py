"""What a user names with `--model`, resolved to the files each backend runs.

    run folder         torch: RUN/checkpoints/segmenter.safetensors
                       onnxruntime: RUN/export/model-<precision>.onnx, tensorrt: RUN/export/model-<precision>.engine
                       (the names `gkd_deploy.run.ExportDir` gives)
    .safetensors       torch: the file; exports in its folder's export/ (where `gkd export` writes them)
    .onnx              onnxruntime: the file, at its own precision; tensorrt: the .engine beside it
    .engine / .plan    tensorrt: the file, at its own precision (metadata in its .json sidecar)

A model's own input size is the one its files were exported at; a run that has no export yet
uses its training crop (the segmenter config's `img_size`), square. Semantic and instance models
resolve alike; the config's type (`SegmenterConfig`, `InstanceSegmenterConfig`) says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gkd_deploy.data.classes import ClassSet
from gkd_deploy.errors import ModelError
from gkd_deploy.models.config import InstanceSegmenterConfig, SegmenterConfig
from gkd_deploy.run import ENGINE_SUFFIXES, ExportDir, RunDir, export_dir_of, resolve_checkpoint, run_of_export
from gkd_deploy.runtime.metadata import ExportMetadata, read_onnx_metadata, read_sidecar_metadata


@dataclass(frozen=True)
class ModelSource:
    """`kind`: "checkpoint" (a run folder or .safetensors: torch, and the exports beside it),
    "onnx" or "engine" (one exported file at one `precision`). `segmenter`: the architecture, whose
    type gives the `task`."""

    path: Path
    name: str
    kind: str
    segmenter: SegmenterConfig | InstanceSegmenterConfig
    class_set: ClassSet
    patch_size: int
    input_size: tuple[int, int]
    checkpoint: Path | None = None
    exports: ExportDir | None = None
    precision: str | None = None
    origin: str = "RUN"  # what `gkd export` takes to write this model's files

    @property
    def task(self) -> str:
        """"semantic" or "instance"."""
        return self.segmenter.task

    def onnx_file(self, precision: str) -> Path | None:
        if self.kind == "onnx":
            return self.path
        if self.kind == "checkpoint":
            return self.exports.file(precision)
        return None

    def engine_file(self, precision: str) -> Path:
        if self.kind == "engine":
            return self.path
        if self.kind == "onnx":
            return self.path.with_suffix(".engine")
        return self.exports.file(precision, "trt")

    def export_command(self, precision: str, engine: bool = False) -> str:
        """The command that writes the missing file (run from the checkpoint this model came from)."""
        return f"gkd export {self.origin} --precision {precision}" + (" --format trt" if engine else "")


def _exported_metadata(exports: ExportDir) -> ExportMetadata | None:
    path = exports.first_existing()
    if path is None:
        return None
    return read_onnx_metadata(path) if path.suffix == ".onnx" else read_sidecar_metadata(path)


def _exported_source(path: Path, kind: str, metadata: ExportMetadata) -> ModelSource:
    """An exported file: all it takes comes from its metadata (no torch)."""
    return ModelSource(path, model_name(path), kind, _typed(metadata, path), metadata.class_set, metadata.patch_size,
                       metadata.input_size, precision=metadata.precision, origin=_origin(path, metadata))


def _origin(path: Path, metadata: ExportMetadata) -> str:
    """The run folder an exported file sits in, else the checkpoint its metadata names."""
    run = run_of_export(path)
    return str(run.path) if run is not None else metadata.source_checkpoint or "RUN"


def _typed(metadata: ExportMetadata, path: Path) -> SegmenterConfig | InstanceSegmenterConfig:
    try:
        return metadata.segmenter_config
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None


def model_name(path: Path) -> str:
    """A run's folder name; an exported file in RUN/export as 'RUN/model-int8.onnx'; else the file name."""
    if path.is_dir():
        return path.name
    run = RunDir.containing(path)
    return f"{run.name}/{path.name}" if run is not None else path.name


def resolve_model(path: str | Path) -> ModelSource:
    """A run folder, checkpoint, .onnx file or engine -> its `ModelSource`; ModelError if unusable."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path} not found: give a run folder, a .safetensors checkpoint, an .onnx file or an engine")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".onnx":
        return _exported_source(path, "onnx", read_onnx_metadata(path))
    if path.is_file() and suffix in ENGINE_SUFFIXES:
        return _exported_source(path, "engine", read_sidecar_metadata(path))
    if path.is_file() and suffix != ".safetensors":
        raise ModelError(f"{path}: cannot tell the model format from '{path.suffix}'; give a run folder, a "
                         ".safetensors checkpoint, an .onnx file or an engine")
    from gkd_deploy.models.checkpoint import CONFIG_KEY, FORMAT, FORMAT_KEY, INSTANCE_FORMAT, read_checkpoint_metadata

    checkpoint, run = resolve_checkpoint(path)
    stored = read_checkpoint_metadata(checkpoint)
    if CONFIG_KEY not in stored:
        raise ModelError(f"{checkpoint} is not a gkd segmenter checkpoint (no gkd config in its metadata)")
    config_class = {FORMAT: SegmenterConfig, INSTANCE_FORMAT: InstanceSegmenterConfig}.get(stored.get(FORMAT_KEY))
    if config_class is None:
        raise ModelError(f"{checkpoint} is not a gkd segmenter checkpoint (its format is {stored.get(FORMAT_KEY)!r}, "
                         f"not {FORMAT!r} or {INSTANCE_FORMAT!r}); give the run's segmenter.safetensors")
    try:
        config = config_class.from_dict(json.loads(stored[CONFIG_KEY]))
    except Exception as error:  # ConfigError, or a malformed field type
        raise ModelError(f"{checkpoint}: its segmenter config cannot be read ({error})") from None
    exports = export_dir_of(checkpoint, run)
    exported = _exported_metadata(exports)
    input_size = exported.input_size if exported else (config.img_size, config.img_size)
    return ModelSource(path, model_name(path), "checkpoint", config, config.class_set, config.patch_size,
                       input_size, checkpoint=checkpoint, exports=exports, origin=str(path))
