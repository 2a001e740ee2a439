"""The SSKD paper's composite instance teacher: Grounding-DINO finds and names boxes, SAM2 draws their masks.

Per batch of images (B, 3, H, W), RGB 0..255:
    prompt   "person. rider. car." from the class names (lower case, each phrase ending with a dot,
             as Grounding-DINO was trained), tokenized once
    detector sigmoid(logits) (Q, T): each query's probability for each prompt token
             box score   = max over all tokens (Grounding-DINO's own box confidence)
             class score = max over the tokens of that class's phrase
             class       = the class of highest class score; the box is kept when its box score >
                           box_threshold and its class score > text_threshold (its phrase, the
                           tokens above text_threshold, touches that class); a box whose phrase
                           falls on no class (only on "." or the [CLS]/[SEP] tokens) is dropped
             at most max_instances boxes, best box score first, in image pixels
    SAM2     one mask per box, prompted with the box on the shared image embedding; with
             `multimask_output` the best of its three masks by predicted IoU; logits resized to
             (H, W) and thresholded at `mask_threshold`; an empty mask drops its instance
    score    the detector's box score: the pseudo-label threshold of the recipe (`above`) is then
             Grounding-DINO's own confidence, whose scale its `box_threshold` already fixes; SAM's
             predicted IoU judges the mask given the box, not whether the object is there.

Phrases are mapped to classes through the tokenizer's character offsets, not by decoding the
detected tokens back to text and matching strings (what the processor's
`post_process_grounded_object_detection` returns): decoded phrases join word pieces and can span
two class names ("traffic light. car"), so string matching loses boxes or names them wrongly.

The models come from Hugging Face `transformers` (the optional extra `grounded-sam`), imported
inside the builder only: importing this module, or `gkd_deploy.instance`, loads no transformers.
`GroundedSAMTeacher` takes the four parts it runs, so tests build tiny random ones and a user can
pass models loaded in any way; `grounded_sam_teacher` loads the pretrained ones by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gkd_deploy.data.classes import CITYSCAPES_THING_NAMES
from gkd_deploy.devices import resolve_device
from gkd_deploy.errors import ConfigError, ModelError, WeightsError
from gkd_deploy.instance.teacher import PseudoInstances
from gkd_deploy.models.weights import ensure_hub_reachable

if TYPE_CHECKING:
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor, Sam2Model, Sam2Processor

log = logging.getLogger(__name__)

INSTALL_HINT = "install the extra: pip install 'gkd-deploy[grounded-sam]'"
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-base"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
PHRASE_END = "."


@dataclass(frozen=True)
class Detections:
    """One image's kept boxes: boxes (N, 4) float32 (x0, y0, x1, y1) in pixels, classes (N,) int64,
    scores (N,) float32, best score first."""
    boxes: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor


def grounding_prompt(class_names: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """"person. rider. car." and each class's (start, end) character span in it.

    ConfigError for no classes, an empty or repeated name, or a name holding the phrase end ".".
    """
    phrases = [str(name).strip().lower() for name in class_names]
    if not phrases:
        raise ConfigError("the Grounded-SAM teacher needs at least one class name")
    for name, phrase in zip(class_names, phrases):
        if not phrase or PHRASE_END in phrase:
            raise ConfigError(f"class name {name!r}: give a non-empty name without '{PHRASE_END}' "
                              f"(Grounding-DINO's prompt ends each class phrase with '{PHRASE_END}')")
    repeated = sorted({phrase for phrase in phrases if phrases.count(phrase) > 1})
    if repeated:
        raise ConfigError(f"class names {repeated} appear more than once (case ignored): give each class once")
    spans, start = [], 0
    for phrase in phrases:
        spans.append((start, start + len(phrase)))
        start += len(phrase) + len(PHRASE_END) + 1  # the dot and the space after it
    return " ".join(phrase + PHRASE_END for phrase in phrases), spans


def class_token_map(offsets: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(T, 2) character offsets of the prompt's tokens -> (C, T) bool: token t lies in class c's name.

    Special tokens ((0, 0) offsets) and the dots belong to no class. ConfigError when the
    tokenizer leaves a class without a token (a name made of characters it drops).
    """
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    tokens = torch.stack([real & (starts >= begin) & (starts < end) for begin, end in spans])
    empty = [index for index, row in enumerate(tokens) if not bool(row.any())]
    if empty:
        raise ConfigError(f"classes {empty} of the prompt get no token from the detector's tokenizer: "
                          "use plain words as class names")
    return tokens


def select_detections(
    logits: torch.Tensor, pred_boxes: torch.Tensor, class_tokens: torch.Tensor, image_size: tuple[int, int], *,
    box_threshold: float, text_threshold: float, max_instances: int,
) -> Detections:
    """One image's Grounding-DINO outputs -> its kept, named boxes (rules in the module docstring).

    Args:
        logits: (Q, L) token logits, L >= T (Grounding-DINO pads to max_text_len with -inf).
        pred_boxes: (Q, 4) (cx, cy, w, h) relative to the image.
        class_tokens: (C, T) bool from `class_token_map`.
        image_size: (H, W) of the image, for boxes in pixels.
    """
    num_tokens = class_tokens.shape[1]
    probabilities = logits[:, :num_tokens].float().sigmoid()  # (Q, T)
    box_scores = probabilities.max(dim=1).values
    in_class = class_tokens.to(device=probabilities.device, dtype=probabilities.dtype)
    class_scores = (probabilities[:, None, :] * in_class[None]).amax(dim=2)  # (Q, C)
    best_class_scores, classes = class_scores.max(dim=1)
    keep = ((box_scores > box_threshold) & (best_class_scores > text_threshold)).nonzero().flatten()
    order = box_scores[keep].argsort(descending=True)[:max_instances]
    keep = keep[order]
    height, width = image_size
    center_x, center_y, box_width, box_height = pred_boxes[keep].float().unbind(-1)
    boxes = torch.stack([(center_x - box_width / 2) * width, (center_y - box_height / 2) * height,
                         (center_x + box_width / 2) * width, (center_y + box_height / 2) * height], dim=-1)
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    return Detections(boxes, classes[keep].to(torch.int64), box_scores[keep].to(torch.float32))


class GroundedSAMTeacher:
    """Grounding-DINO boxes with SAM2 masks as an `InstanceTeacher` (rules in the module docstring).

    Args:
        detector: a `GroundingDinoForObjectDetection`.
        detector_processor: its `GroundingDinoProcessor` (image processor and tokenizer).
        segmenter: a `Sam2Model`.
        segmenter_processor: its `Sam2Processor`.
        class_names: the student's classes in index order; class i is the i-th phrase of the prompt.
        box_threshold: on the detector's box score (Grounded-SAM's 0.3).
        text_threshold: on a token's probability to be part of the phrase (Grounded-SAM's 0.25).
        max_instances: the most instances per image, best box score first.
        mask_threshold: on SAM2's mask logits (SAM's 0.0).
        multimask_output: SAM2 gives three masks per box and the best by predicted IoU is kept;
            False (SAM's choice for box prompts, which are not ambiguous) asks for one.
        device: where both models run; the models are moved there and set to eval.
    """

    def __init__(self, detector: "GroundingDinoForObjectDetection", detector_processor: "GroundingDinoProcessor",
                 segmenter: "Sam2Model", segmenter_processor: "Sam2Processor", class_names: Sequence[str], *,
                 box_threshold: float = 0.3, text_threshold: float = 0.25, max_instances: int = 100,
                 mask_threshold: float = 0.0, multimask_output: bool = False,
                 device: str | torch.device = "cpu") -> None:
        for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Grounded-SAM teacher: {name} must lie in [0, 1], got {value}")
        if max_instances < 1:
            raise ConfigError(f"Grounded-SAM teacher: max_instances must be at least 1, got {max_instances}")
        self.class_names = tuple(str(name) for name in class_names)
        self.prompt, spans = grounding_prompt(self.class_names)
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        self.max_instances, self.mask_threshold, self.multimask_output = max_instances, mask_threshold, multimask_output
        self.device = resolve_device(device)
        self.detector = detector.to(self.device).eval()
        self.segmenter = segmenter.to(self.device).eval()
        self.detector_processor, self.segmenter_processor = detector_processor, segmenter_processor
        encoding = detector_processor.tokenizer(self.prompt, return_offsets_mapping=True, return_token_type_ids=True,
                                                return_tensors="pt")
        max_text_len = getattr(detector.config, "max_text_len", None)
        if max_text_len is not None and encoding["input_ids"].shape[1] > max_text_len:
            raise ConfigError(f"the prompt of {len(self.class_names)} classes is {encoding['input_ids'].shape[1]} "
                              f"tokens, more than the detector's {max_text_len}: give fewer or shorter class names")
        self.class_tokens = class_token_map(encoding["offset_mapping"][0], spans)
        self.text_inputs = {key: encoding[key].to(self.device)
                            for key in ("input_ids", "token_type_ids", "attention_mask")}

    @torch.no_grad()
    def pseudo_label(self, images: torch.Tensor) -> list[PseudoInstances]:
        """images (B, 3, H, W) float RGB 0..255 -> B `PseudoInstances` on the images' device, masks at
        (H, W), best score first; an image without detections gets N = 0 (shapes (0,), (0, H, W), (0,))."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"Grounded-SAM teacher: images must be (B, 3, H, W) RGB, got {tuple(images.shape)}")
        # 8-bit on the CPU, the input every image processor takes (the PIL-based ones refuse floats
        # above 1 and GPU tensors); both models were trained on 8-bit images, so rounding loses nothing.
        pixels = images.detach().round().clamp(0, 255).to(device="cpu", dtype=torch.uint8)
        detections = self.detect(pixels)
        masks = self.segment(pixels, detections)
        labels = []
        for detection, image_masks in zip(detections, masks):
            nonempty = image_masks.flatten(1).any(dim=1)
            if not bool(nonempty.all()):
                log.debug("Grounded-SAM: %d of %d boxes got an empty mask and are dropped",
                          int((~nonempty).sum()), len(nonempty))
            labels.append(PseudoInstances(detection.classes[nonempty].to(images.device),
                                          image_masks[nonempty].to(images.device),
                                          detection.scores[nonempty].to(images.device)))
        return labels

    @torch.no_grad()
    def detect(self, images: torch.Tensor) -> list[Detections]:
        """images (B, 3, H, W) uint8 RGB on the CPU -> per image the kept boxes in pixels, on the teacher's device."""
        batch = images.shape[0]
        inputs = self.detector_processor.image_processor(images=list(images), return_tensors="pt")
        outputs = self.detector(
            pixel_values=inputs["pixel_values"].to(self.device, dtype=self.detector.dtype),
            pixel_mask=inputs["pixel_mask"].to(self.device),
            **{key: value.expand(batch, -1) for key, value in self.text_inputs.items()},
        )
        image_size = (int(images.shape[2]), int(images.shape[3]))
        return [select_detections(outputs.logits[index], outputs.pred_boxes[index], self.class_tokens, image_size,
                                  box_threshold=self.box_threshold, text_threshold=self.text_threshold,
                                  max_instances=self.max_instances)
                for index in range(batch)]

    @torch.no_grad()
    def segment(self, images: torch.Tensor, detections: Sequence[Detections]) -> list[torch.Tensor]:
        """images (B, 3, H, W) uint8 RGB on the CPU and their boxes -> SAM2's masks, (N, H, W) bool per image, on
        the teacher's device.

        The image encoder runs once for the batch; the prompt decoder once per image with boxes
        (SAM2 cannot pad a batch to equal box counts).
        """
        height, width = int(images.shape[2]), int(images.shape[3])
        masks = [torch.zeros(0, height, width, dtype=torch.bool, device=self.device) for _ in detections]
        with_boxes = [index for index, detection in enumerate(detections) if len(detection.boxes)]
        if not with_boxes:
            return masks
        inputs = self.segmenter_processor(images=[images[index] for index in with_boxes], return_tensors="pt")
        embeddings = self.segmenter.get_image_embeddings(
            inputs["pixel_values"].to(self.device, dtype=self.segmenter.dtype))
        for position, index in enumerate(with_boxes):
            boxes = self.segmenter_processor(input_boxes=[detections[index].boxes.tolist()],
                                             original_sizes=[[height, width]], return_tensors="pt")["input_boxes"]
            outputs = self.segmenter(image_embeddings=[level[position:position + 1] for level in embeddings],
                                     input_boxes=boxes.to(self.device, dtype=self.segmenter.dtype),
                                     multimask_output=self.multimask_output)
            best = outputs.iou_scores[0].argmax(dim=-1)  # (N,)
            chosen = outputs.pred_masks[0][torch.arange(len(best), device=best.device), best]  # (N, h, w)
            resized = self.segmenter_processor.post_process_masks(
                [chosen[:, None].float()], [[height, width]], mask_threshold=self.mask_threshold)[0]
            masks[index] = resized[:, 0].to(self.device)
        return masks


def import_transformers() -> Any:
    """The `transformers` module, checked to have Grounding-DINO and SAM2; ModelError naming the install otherwise."""
    try:
        import transformers
    except ImportError:
        raise ModelError(f"the Grounded-SAM teacher needs Hugging Face transformers, which is not installed: "
                         f"{INSTALL_HINT}") from None
    try:
        for name in ("GroundingDinoForObjectDetection", "GroundingDinoProcessor", "Sam2Model", "Sam2Processor"):
            getattr(transformers, name)
    except (AttributeError, ImportError):
        raise ModelError(f"transformers {transformers.__version__} has no {name}: the Grounded-SAM teacher needs "
                         f"transformers 5 or newer; {INSTALL_HINT}") from None
    return transformers


def from_pretrained(loader: Any, source: str, label: str, *, local_files_only: bool) -> Any:
    """`loader.from_pretrained(source)`; WeightsError naming the fix when the files can be neither
    found (local folder, Hugging Face cache) nor downloaded, in seconds on an offline machine."""
    fix = ("run once with internet access to fill the Hugging Face cache, or give the path of a folder "
           "written by save_pretrained()")
    if not local_files_only and needs_download(source):
        ensure_hub_reachable(f"the {label} {source!r}", fix)
    try:
        return loader.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise WeightsError(f"cannot load the {label} {source!r}: {first_line}; {fix}") from None


def needs_download(source: str) -> bool:
    """Whether `from_pretrained(source)` would go to the hub: `source` is no local folder, a valid hub
    id, and its config is not in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    if Path(source).is_dir():
        return False
    try:
        return not isinstance(try_to_load_from_cache(source, "config.json"), str)
    except ValueError:  # no valid hub id: from_pretrained says so itself
        return False


def grounded_sam_teacher(detector: str = DEFAULT_DETECTOR, segmenter: str = DEFAULT_SEGMENTER, *,
                         class_names: Sequence[str] = CITYSCAPES_THING_NAMES, device: str | torch.device = "cpu",
                         local_files_only: bool = False, box_threshold: float = 0.3, text_threshold: float = 0.25,
                         max_instances: int = 100) -> GroundedSAMTeacher:
    """The pretrained Grounded-SAM teacher: Grounding-DINO `detector` and SAM2 `segmenter`, each a
    Hugging Face hub id or a local folder, loaded with their processors through `from_pretrained`.

    `local_files_only` reads the Hugging Face cache and local folders only (as HF_HUB_OFFLINE=1).
    ModelError when transformers is missing or too old, WeightsError when weights cannot be had.
    """
    transformers = import_transformers()
    parts = {}
    for key, loader, source, label in (
        ("detector", transformers.GroundingDinoForObjectDetection, detector, "Grounding-DINO detector"),
        ("detector_processor", transformers.GroundingDinoProcessor, detector, "Grounding-DINO processor"),
        ("segmenter", transformers.Sam2Model, segmenter, "SAM2 segmenter"),
        ("segmenter_processor", transformers.Sam2Processor, segmenter, "SAM2 processor"),
    ):
        parts[key] = from_pretrained(loader, source, label, local_files_only=local_files_only)
    return GroundedSAMTeacher(**parts, class_names=class_names, box_threshold=box_threshold,
                              text_threshold=text_threshold, max_instances=max_instances, device=device)
