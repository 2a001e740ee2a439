"""The GKD authors' task-learning checkpoints (mmseg + mmdet's Mask2Former) as gkd segmenters.

Their stage 3 (`task_learning/configs/frozen_vfms/deit_vit-S_mask2former.py` on
`configs/_base_/models/dinov2_mask2former.py`) trains mmseg's `Mask2FormerHead` (mmdet's, with
mmseg's `cls_embed`) on a frozen `DinoVisionTransformer` (`rein/models/backbones/dino_v2.py`).
mmengine saves `{'meta', 'state_dict', 'optimizer', ...}`; `state_dict` holds `backbone.*` (the
layout of `authors_student`) and `decode_head.*`. Their head and ours compute the same network:

- pyramid: block outputs 3, 5, 7, 11, before the final norm, resized x4, x2, x1, x0.5 (their
  backbone's `forward`; our `ViTPyramid`);
- pixel decoder (mmdet `MSDeformAttnPixelDecoder`): 1x1 conv + GN(32) per encoded level, coarsest
  first; `num_layers` post-norm layers of multi-scale deformable attention (3 levels, 8 heads,
  4 points) + FFN (ReLU); a learned level embedding added to the sine code; the stride-4 lateral
  1x1 conv + GN (no bias), the encoded stride-8 map upsampled onto it, a 3x3 conv + GN + ReLU and
  a 1x1 `mask_feature` conv;
- transformer decoder: learned query features and query positions, layer i cross-attends to level
  i mod 3 with the mask of the previous prediction, then self-attention, then FFN, post-norm;
  one shared prediction head (`post_norm`, `cls_embed`, 3-layer `mask_embed`).

Heads, points and GroupNorm groups are not in the weights: `num_heads` and `num_points` default
to the authors' 8 and 4 and are checked against the deformable attention's shapes. The sine
position code follows mmdet's convention (`position_code="mmdet"`). A head whose shape our
decoder cannot take (another number of feature levels, decoder input projections, a Rein head) is
refused with the mismatches listed; nothing is loaded partially.

Not the same as their inference: mmseg upsamples the query masks to the image before combining
them with the class probabilities; ours combines at stride 4 and resizes the scores. The weights
are the same; the per-pixel scores differ slightly near edges.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from gkd_deploy.data.classes import CLASS_SETS, ClassSet
from gkd_deploy.errors import WeightsError
from gkd_deploy.models.authors_student import dinov2_layout_to_timm, is_distillation_checkpoint
from gkd_deploy.models.registry import get_model_spec, list_model_specs
from gkd_deploy.models.segmenter import Segmenter, SegmenterConfig, build_segmenter
from gkd_deploy.models.weights import check_weights_file, read_state_dict

log = logging.getLogger(__name__)

BACKBONE_PREFIX = "backbone."
HEAD_PREFIX = "decode_head."
#: The authors' head: 8 attention heads, 4 deformable points, GN(32) (`dinov2_mask2former.py`).
AUTHORS_HEADS, AUTHORS_POINTS, AUTHORS_GROUPS = 8, 4, 32
_ENCODED_LEVELS = 3
_SHOWN = 4

# Our decoder's parameter names -> theirs (under "decode_head."), first match wins.
_DECODER_NAMES: tuple[tuple[str, str], ...] = (
    (r"pixel_decoder\.input_proj\.(\d+)\.0\.", r"pixel_decoder.input_convs.\1.conv."),
    (r"pixel_decoder\.input_proj\.(\d+)\.1\.", r"pixel_decoder.input_convs.\1.gn."),
    (r"pixel_decoder\.level_embed$", r"pixel_decoder.level_encoding.weight"),
    (r"pixel_decoder\.layers\.(\d+)\.attention\.", r"pixel_decoder.encoder.layers.\1.self_attn."),
    (r"pixel_decoder\.layers\.(\d+)\.norm1\.", r"pixel_decoder.encoder.layers.\1.norms.0."),
    (r"pixel_decoder\.layers\.(\d+)\.norm2\.", r"pixel_decoder.encoder.layers.\1.norms.1."),
    (r"pixel_decoder\.layers\.(\d+)\.linear1\.", r"pixel_decoder.encoder.layers.\1.ffn.layers.0.0."),
    (r"pixel_decoder\.layers\.(\d+)\.linear2\.", r"pixel_decoder.encoder.layers.\1.ffn.layers.1."),
    (r"pixel_decoder\.lateral\.0\.", r"pixel_decoder.lateral_convs.0.conv."),
    (r"pixel_decoder\.lateral\.1\.", r"pixel_decoder.lateral_convs.0.gn."),
    (r"pixel_decoder\.output\.0\.", r"pixel_decoder.output_convs.0.conv."),
    (r"pixel_decoder\.output\.1\.", r"pixel_decoder.output_convs.0.gn."),
    (r"pixel_decoder\.mask_features\.", r"pixel_decoder.mask_feature."),
    (r"transformer\.(query_feat|query_embed|level_embed)\.", r"\1."),
    (r"transformer\.layers\.(\d+)\.cross_attention\.", r"transformer_decoder.layers.\1.cross_attn.attn."),
    (r"transformer\.layers\.(\d+)\.self_attention\.", r"transformer_decoder.layers.\1.self_attn.attn."),
    (r"transformer\.layers\.(\d+)\.norm1\.", r"transformer_decoder.layers.\1.norms.0."),
    (r"transformer\.layers\.(\d+)\.norm2\.", r"transformer_decoder.layers.\1.norms.1."),
    (r"transformer\.layers\.(\d+)\.norm3\.", r"transformer_decoder.layers.\1.norms.2."),
    (r"transformer\.layers\.(\d+)\.linear1\.", r"transformer_decoder.layers.\1.ffn.layers.0.0."),
    (r"transformer\.layers\.(\d+)\.linear2\.", r"transformer_decoder.layers.\1.ffn.layers.1."),
    (r"transformer\.head\.norm\.", r"transformer_decoder.post_norm."),
    (r"transformer\.head\.class_embed\.", r"cls_embed."),
    (r"transformer\.head\.mask_embed\.", r"mask_embed."),
)


def their_decoder_name(ours: str) -> str | None:
    """Our decoder's parameter name (no "decoder." prefix) -> the mmseg name (no "decode_head."), or None."""
    for pattern, replacement in _DECODER_NAMES:
        if re.match(pattern, ours):
            return re.sub(pattern, replacement, ours, count=1)
    return None


def import_authors_segmenter(path: str | Path, *, student: str | None = None, classes: str | None = None,
                             num_heads: int = AUTHORS_HEADS, num_points: int = AUTHORS_POINTS,
                             groups: int = AUTHORS_GROUPS) -> Segmenter:
    """A gkd segmenter holding every tensor of the authors' mmseg Mask2Former checkpoint at `path`.

    `student`: the zoo name of the backbone (default: the first student whose architecture has
    exactly the checkpoint's backbone tensors, DeiT ones first); `classes`: the class set (default:
    the one with as many classes as the head). WeightsError naming every mismatch otherwise.
    """
    path = check_weights_file(Path(path))
    state = read_state_dict(path)
    backbone, head = _split(state, path)
    options = _decoder_options(head, path, num_heads, num_points, groups)
    patch_size, img_size = _geometry(backbone, path)
    tensors = dinov2_layout_to_timm(backbone, str(path))
    spec_name = student or _matching_student(tensors.backbone, patch_size, img_size, path)
    num_classes = head["cls_embed.weight"].shape[0] - 1
    config = SegmenterConfig(encoder=spec_name, decoder="mask2former", decoder_options=options,
                             patch_size=patch_size, img_size=img_size, class_set=_class_set(classes, num_classes, path))
    model = build_segmenter(config, pretrained=False)
    ours = _our_state(model, tensors.backbone, tensors.mask_token, head, path)
    model.load_state_dict(ours, strict=True)
    log.info("imported %s: %d backbone and %d decode_head tensors into %s + mask2former (%s), %d classes (%s)",
             path, len(backbone), len(head), spec_name, options, num_classes, config.class_set.name)
    return model


def _split(state: Mapping[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    if is_distillation_checkpoint(state):
        raise WeightsError(f"{path} is a GKD distillation checkpoint (student.backbone.*), not a task-learning one: "
                           "give it to gkd train as --student-weights")
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    head = {k[len(HEAD_PREFIX):]: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    others = [k for k in state if not k.startswith((BACKBONE_PREFIX, HEAD_PREFIX))]
    if not head or "cls_embed.weight" not in head:
        raise WeightsError(f"{path} has no mmseg Mask2Former head (decode_head.cls_embed.weight): give the "
                           "authors' task-learning checkpoint (state_dict with backbone.* and decode_head.*)")
    if not backbone:
        raise WeightsError(f"{path} has no backbone.* tensors (saved without its frozen backbone?): merge the "
                           "backbone in first (their tools/generate_full_weights.py does) and import the result")
    if others:
        raise WeightsError(f"{path}: {len(others)} tensors outside backbone.* and decode_head.* "
                           f"(e.g. {', '.join(others[:_SHOWN])}), which a gkd segmenter cannot hold")
    return backbone, head


def _count(head: Mapping[str, torch.Tensor], prefix: str) -> int:
    indices = {int(m.group(1)) for k in head if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def _shape(head: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in head:
        raise WeightsError(f"{path}: decode_head.{key} is missing; the file is not a Mask2Former head as the GKD "
                           "authors train it (mmdet Mask2FormerHead with MSDeformAttnPixelDecoder)")
    return tuple(head[key].shape)


def _decoder_options(head: Mapping[str, torch.Tensor], path: Path, num_heads: int, num_points: int,
                     groups: int) -> dict[str, object]:
    """Our Mask2Former's options from the head's shapes; WeightsError for what ours cannot represent."""
    num_queries, hidden_dim = _shape(head, "query_feat.weight", path)
    problems = []
    structure = {
        "transformer levels (level_embed rows)": (_shape(head, "level_embed.weight", path)[0], _ENCODED_LEVELS),
        "pixel decoder levels (level_encoding rows)":
            (_shape(head, "pixel_decoder.level_encoding.weight", path)[0], _ENCODED_LEVELS),
        "encoded-level input convs": (_count(head, "pixel_decoder.input_convs."), _ENCODED_LEVELS),
        "FPN lateral convs": (_count(head, "pixel_decoder.lateral_convs."), 1),
        "FPN output convs": (_count(head, "pixel_decoder.output_convs."), 1),
    }
    problems += [f"{what}: {theirs}, ours {ours}" for what, (theirs, ours) in structure.items() if theirs != ours]
    projections = sorted(k for k in head if k.startswith("decoder_input_projs."))
    if projections:
        problems.append(f"decoder input projections ({HEAD_PREFIX}{projections[0]}, ...): ours has none "
                        "(it takes the pixel decoder's channels as they are)")
    extra = sorted(k for k in head if k.startswith(("vpt", "querys2feat", "reins")))
    if extra:
        problems.append(f"Rein tensors ({HEAD_PREFIX}{extra[0]}, ...): ours has no Rein head")
    samples = _shape(head, "pixel_decoder.encoder.layers.0.self_attn.attention_weights.weight", path)[0]
    if samples != num_heads * _ENCODED_LEVELS * num_points:
        problems.append(f"deformable attention samples {samples} per query, not heads {num_heads} x levels "
                        f"{_ENCODED_LEVELS} x points {num_points}: give --num-heads / --num-points as trained")
    if problems:
        raise WeightsError(f"{path}: the Mask2Former head differs from what gkd's decoder can represent: "
                           + "; ".join(problems))
    return {
        "hidden_dim": hidden_dim, "num_queries": num_queries,
        "dec_layers": _count(head, "transformer_decoder.layers."),
        "pixel_layers": _count(head, "pixel_decoder.encoder.layers."),
        "num_heads": num_heads, "num_points_deform": num_points, "groups": groups,
        "dim_feedforward": _shape(head, "transformer_decoder.layers.0.ffn.layers.0.0.weight", path)[0],
        "pixel_ffn": _shape(head, "pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight", path)[0],
        "position_code": "mmdet",
    }


def _geometry(backbone: Mapping[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """(patch size, input size) from the kernel and the square position grid after the class slot."""
    kernel, pos_embed = backbone.get("patch_embed.proj.weight"), backbone.get("pos_embed")
    if kernel is None or pos_embed is None:
        raise WeightsError(f"{path}: backbone.patch_embed.proj.weight or backbone.pos_embed is missing: "
                           "the backbone is not a ViT as the GKD authors train it")
    side = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if side * side != pos_embed.shape[1] - 1:
        raise WeightsError(f"{path}: backbone.pos_embed holds {pos_embed.shape[1]} positions, not a class slot and a "
                           "square grid")
    return int(kernel.shape[-1]), side * int(kernel.shape[-1])


def _timm_state_shapes(spec_name: str, patch_size: int, img_size: int) -> dict[str, tuple[int, ...]]:
    import timm

    spec = get_model_spec(spec_name, role="student")
    with torch.device("meta"):
        model = timm.create_model(spec.architecture, **spec.overrides, patch_size=patch_size, img_size=img_size,
                                  num_classes=0)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _matching_student(backbone: Mapping[str, torch.Tensor], patch_size: int, img_size: int, path: Path) -> str:
    shapes = {k: tuple(v.shape) for k, v in backbone.items()}
    specs = [s for s in list_model_specs("student") if s.family == "vit" and s.has_weights]
    specs.sort(key=lambda s: not s.drops_distillation_token)  # the authors' DeiT students first
    for spec in specs:
        if _timm_state_shapes(spec.name, patch_size, img_size) == shapes:
            return spec.name
    width = backbone["pos_embed"].shape[-1]
    depth = len({k.split(".")[1] for k in backbone if k.startswith("blocks.")})
    raise WeightsError(f"{path}: no zoo student has the checkpoint's backbone ({width} wide, {depth} blocks, patch "
                       f"{patch_size}); give --student NAME (a zoo student or timm:<vit name>)")


def _class_set(name: str | None, num_classes: int, path: Path) -> ClassSet:
    if name is not None:
        if name not in CLASS_SETS:
            raise WeightsError(f"unknown class set '{name}'; known: {', '.join(CLASS_SETS)}")
        chosen = CLASS_SETS[name]
        if chosen.num_classes != num_classes:
            raise WeightsError(f"{path}: the head predicts {num_classes} classes, '{name}' has {chosen.num_classes}")
        return chosen
    fitting = [c for c in CLASS_SETS.values() if c.num_classes == num_classes]
    if not fitting:
        raise WeightsError(f"{path}: the head predicts {num_classes} classes and no class set has as many "
                           f"({', '.join(f'{c.name}: {c.num_classes}' for c in CLASS_SETS.values())})")
    return fitting[0]


def _our_state(model: Segmenter, backbone: Mapping[str, torch.Tensor], mask_token: torch.Tensor | None,
               head: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of our segmenter, taken from theirs; WeightsError listing every key that differs."""
    theirs = {BACKBONE_PREFIX + k: v for k, v in backbone.items()}
    theirs.update({HEAD_PREFIX + k: v for k, v in head.items()})
    if mask_token is not None:
        theirs[BACKBONE_PREFIX + "mask_token"] = mask_token
    names = {}
    for ours in model.state_dict():
        if ours.startswith("encoder.backbone."):
            names[ours] = BACKBONE_PREFIX + ours[len("encoder.backbone."):]
        elif ours == "encoder.mask_token":
            names[ours] = BACKBONE_PREFIX + "mask_token"
        elif ours.startswith("decoder."):
            mapped = their_decoder_name(ours[len("decoder."):])
            names[ours] = HEAD_PREFIX + mapped if mapped else f"(no mmseg name for {ours})"
    expected = model.state_dict()
    missing = [names[k] for k in expected if names.get(k) not in theirs]
    unexpected = sorted(set(theirs) - set(names.values()))
    shapes = [f"{names[k]} {tuple(theirs[names[k]].shape)} vs ours {tuple(v.shape)}" for k, v in expected.items()
              if names.get(k) in theirs and tuple(theirs[names[k]].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(items)} {what} ({', '.join(items[:_SHOWN])})" for what, items in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if items]
        raise WeightsError(f"{path} does not fit {model.config.encoder} + mask2former: " + "; ".join(parts)
                           + ". Give --student as it was trained, or a checkpoint of the authors' Mask2Former head")
    return {k: theirs[names[k]] for k in expected}


def import_authors_checkpoint(path: str | Path, out: str | Path, **options: object) -> Path:
    """`import_authors_segmenter`, written to `out` as a gkd segmenter checkpoint (.safetensors) that
    `gkd eval`, `export`, `validate`, `infer` and `benchmark` take; the source file and its hash in
    the metadata."""
    from gkd_deploy.fileio import file_sha256
    from gkd_deploy.models.checkpoint import save_segmenter

    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise WeightsError(f"--out {out}: a gkd segmenter checkpoint is a .safetensors file (e.g. model.safetensors)")
    model = import_authors_segmenter(path, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_segmenter(model, out, extra={"imported_from": Path(path).name, "source_sha256": file_sha256(path),
                                             "source_format": "mmseg Mask2Former (GKD authors)"})
