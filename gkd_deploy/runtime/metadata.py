"""The metadata every exported model carries, so it can be run and checked with nothing else.

A deployed file must be usable without the checkpoint or the training run: class names and
colours, the input it expects, the architecture config, its precision and where it came from all
travel inside it (the Ultralytics habit): one JSON object under the key `gkd` in an ONNX file's
`metadata_props`, repeated in a sidecar file (`<engine>.json`) beside a TensorRT engine.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gkd_deploy
from gkd_deploy.data.classes import IGNORE_INDEX, ClassSet
from gkd_deploy.errors import ModelError
from gkd_deploy.precision import EXPORT_PRECISIONS, precision as get_precision

if TYPE_CHECKING:
    from gkd_deploy.models.config import InstanceSegmenterConfig, SegmenterConfig
    import onnx

METADATA_KEY = "gkd"
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "labels")
# An instance model's outputs: masks (B, K, H, W) uint8 0/1, classes (B, K) int64, scores (B, K) float32.
INSTANCE_OUTPUT_NAMES = ("masks", "classes", "scores")
# Inside an instance file's graph: the network's raw class and mask logits, the tensors its
# post-processing starts from (named by the export, so that int8 calibration can leave what
# follows them, top-k, casts and the mask threshold, in float).
INSTANCE_NETWORK_OUTPUTS = ("class_logits", "mask_logits")
# What a file's model does, and the outputs its export holds.
TASK_OUTPUTS = {"semantic": OUTPUT_NAMES, "instance": INSTANCE_OUTPUT_NAMES}
# `gkd export --outputs`: which of them a file returns.
OUTPUT_CHOICES = {"both": OUTPUT_NAMES, "scores": ("scores",), "labels": ("labels",)}
LAYOUT = "NCHW RGB float32 0-255, normalisation inside the graph"


@dataclass(frozen=True)
class ExportMetadata:
    """The gkd metadata of one exported file.

    The input `images` is (batch, 3, height, width) with `input_size` = (height, width) fixed and
    the batch free; the outputs (`outputs`, chosen at export) are `scores` (batch, K, height,
    width) float32 and `labels` (batch, height, width) uint8, or one of them. `task` is "semantic"
    (those outputs) or "instance" (`masks` (batch, K, height, width) uint8, `classes` (batch, K)
    int64, `scores` (batch, K) float32; K fixed). `segmenter` is the config's `to_dict()` that rebuilds
    the architecture; `source_checkpoint` / `source_sha256` name the weights it was exported
    from. `extra` holds the pixel normalisation applied inside the graph and, for int8 files,
    the calibration (method, image count, quantized op types).
    """

    precision: str
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    segmenter: dict[str, Any]
    gkd_version: str = gkd_deploy.__version__
    source_checkpoint: str | None = None
    source_sha256: str | None = None
    outputs: tuple[str, ...] = OUTPUT_NAMES
    layout: str = LAYOUT
    extra: dict[str, Any] = field(default_factory=dict)
    task: str = "semantic"

    def __post_init__(self) -> None:
        if self.task not in TASK_OUTPUTS:
            raise ModelError(f"unknown task {self.task!r} in gkd metadata (known: {', '.join(TASK_OUTPUTS)}); "
                             "this file needs a newer gkd-deploy, or export it again")

    @property
    def is_instance(self) -> bool:
        return self.task == "instance"

    @property
    def input_name(self) -> str:
        return INPUT_NAME

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.extra.get("calibration")

    @property
    def segmenter_config(self) -> "SegmenterConfig | InstanceSegmenterConfig":
        """The architecture the file was exported from, typed by its task (torch-free); ModelError if unreadable."""
        from gkd_deploy.models.config import TASK_CONFIGS

        try:
            return TASK_CONFIGS[self.task].from_dict(self.segmenter)
        except Exception as error:  # ConfigError, or a malformed field type
            raise ModelError(f"its segmenter config cannot be read ({error})") from None

    @property
    def patch_size(self) -> int:
        return int(self.segmenter.get("patch_size", 16))

    @property
    def class_set(self) -> ClassSet:
        stored = self.segmenter.get("class_set") or {}
        return ClassSet(str(stored.get("name", "custom")), self.class_names, self.palette,
                        int(stored.get("ignore_index", IGNORE_INDEX)))

    def with_precision(self, precision: str, calibration: dict[str, Any] | None = None) -> "ExportMetadata":
        """The metadata of a converted copy of the same model (fp16, int8)."""
        get_precision(precision, EXPORT_PRECISIONS)
        extra = {key: value for key, value in self.extra.items() if key != "calibration"}
        if calibration is not None:
            extra["calibration"] = calibration
        return dataclasses.replace(self, precision=precision, extra=extra, gkd_version=gkd_deploy.__version__)

    @classmethod
    def of_segmenter(cls, segmenter: Any, input_size: tuple[int, int], source_checkpoint: str | Path | None = None,
                     source_sha256: str | None = None) -> "ExportMetadata":
        """fp32 metadata of a `Segmenter` or `InstanceSegmenter` exported at `input_size` (height, width):
        what the exporter embeds."""
        class_set, encoder = segmenter.class_set, segmenter.encoder
        # The graph divides 0-255 pixels by these itself; recorded so a reader knows what not to redo.
        normalisation = {"mean": encoder.pixel_mean.flatten().tolist(), "std": encoder.pixel_std.flatten().tolist(),
                         "range": "0-255"}
        task = segmenter.task
        return cls(
            task=task,
            outputs=TASK_OUTPUTS[task],
            precision="fp32",
            input_size=(int(input_size[0]), int(input_size[1])),
            class_names=tuple(class_set.names),
            palette=tuple(tuple(int(v) for v in colour) for colour in class_set.palette),
            segmenter=segmenter.config.to_dict(),
            source_checkpoint=str(Path(source_checkpoint).resolve()) if source_checkpoint is not None else None,
            source_sha256=source_sha256,
            extra={"normalisation": normalisation},
        )

    def with_outputs(self, outputs: tuple[str, ...]) -> "ExportMetadata":
        """The metadata of the same file returning only `outputs` (`gkd export --outputs`)."""
        return dataclasses.replace(self, outputs=tuple(outputs))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, where: str) -> "ExportMetadata":
        try:
            raw = json.loads(text)
            return cls(
                precision=str(raw["precision"]),
                input_size=_pair(raw["input_size"]),
                class_names=tuple(str(name) for name in raw["class_names"]),
                palette=tuple(tuple(int(v) for v in colour) for colour in raw["palette"]),
                segmenter=dict(raw["segmenter"]),
                gkd_version=str(raw["gkd_version"]),
                source_checkpoint=raw.get("source_checkpoint"),
                source_sha256=raw.get("source_sha256"),
                outputs=tuple(raw.get("outputs", OUTPUT_NAMES)),
                layout=str(raw.get("layout", LAYOUT)),
                extra=dict(raw.get("extra") or {}),
                task=str(raw.get("task", "semantic")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{where}: its gkd metadata is malformed ({type(error).__name__}: {error}); "
                              "export the model again with `gkd export`") from None


def _pair(values: Any) -> tuple[int, int]:
    height, width = (int(v) for v in values)
    return height, width


def embed_metadata(model: onnx.ModelProto, metadata: ExportMetadata) -> onnx.ModelProto:
    """Set the `gkd` entry of `model.metadata_props`; other entries stay."""
    import onnx

    kept = {entry.key: entry.value for entry in model.metadata_props if entry.key != METADATA_KEY}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, kept | {METADATA_KEY: metadata.to_json()})
    return model


def metadata_of(model: onnx.ModelProto, where: str) -> ExportMetadata:
    """The gkd metadata of a loaded model; `where` names it in errors."""
    return _from_props({entry.key: entry.value for entry in model.metadata_props}, where)


def _from_props(props: dict[str, str], where: str) -> ExportMetadata:
    if METADATA_KEY not in props:
        raise ModelError(f"{where} carries no gkd metadata (class names, input size, precision): it was not "
                          "exported by gkd-deploy; export the checkpoint with `gkd export`")
    return ExportMetadata.from_json(props[METADATA_KEY], where)


def read_onnx_metadata(path: str | Path) -> ExportMetadata:
    """The metadata of an exported ONNX file; ModelError if it is not ONNX or has none."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} not found")
    if path.stat().st_size == 0:
        # protobuf reads zero bytes as an empty, valid model: say what the file is instead.
        raise ModelError(f"{path} is empty (0 bytes): an interrupted copy or export? Export again with `gkd export`")
    try:
        props = _scan_model_props(path)
    except OSError as error:
        raise ModelError(f"cannot read {path}: {error}") from None
    except ValueError as error:
        raise ModelError(f"{path} is not an ONNX file ({error})") from None
    return _from_props(props, str(path))


# ModelProto's top-level fields (onnx.proto): the IR version, the graph and the metadata entries.
_IR_VERSION, _GRAPH, _METADATA_PROPS = 1, 7, 14


def _scan_model_props(path: Path) -> dict[str, str]:
    """`metadata_props` of an ONNX file, read from the protobuf wire format without parsing the graph.

    The runtime must not need the `onnx` package (its import alone takes most of a second on a
    small board): the top-level fields are walked and every other one, the graph included, is
    skipped by its length. ValueError for bytes that are not a model (no IR version or graph)."""
    data = memoryview(path.read_bytes())
    props: dict[str, str] = {}
    seen: set[int] = set()
    for field_number, value in _fields(data):
        seen.add(field_number)
        if field_number == _METADATA_PROPS and isinstance(value, memoryview):
            entry = {number: bytes(item) for number, item in _fields(value) if isinstance(item, memoryview)}
            props[entry.get(1, b"").decode("utf-8", "replace")] = entry.get(2, b"").decode("utf-8", "replace")
    if _IR_VERSION not in seen or _GRAPH not in seen:
        raise ValueError("no IR version or graph in it")
    return props


def _fields(data: memoryview):
    """(field number, int or memoryview) for each field of one protobuf message."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError("truncated")
            value, position = data[position:position + length], position + length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
            value = 0
        else:
            raise ValueError(f"wire type {wire_type}")
        if position > end:
            raise ValueError("truncated")
        yield number, value


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_sidecar_metadata(engine: str | Path) -> ExportMetadata:
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelError(f"{engine} has no metadata file {path.name} beside it; build engines with `gkd export --format trt`")
    return ExportMetadata.from_json(path.read_text(), str(path))
