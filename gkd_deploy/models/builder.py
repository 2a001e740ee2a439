"""Build encoders from the zoo: name -> timm model at our patch size -> `ViTEncoder`.

Pretrained weights are loaded by timm into a model of their own patch size (its key conversions
and checkpoint filters apply), then fitted to the model we run (`patch_grid.fit_state_dict`): the
patch-embedding kernel is resized with bicubic interpolation and the position embedding
interpolated to the new token grid, as the GKD authors do when they run DINOv2 at patch 16 and
DeiT at patch 14. A distilled DeiT checkpoint loses its distillation token on the way.

A weights file may also be one of our own encoder or segmenter checkpoints or the GKD authors'
distillation checkpoint (`authors_student`): both hold a plain ViT's tensors (no distillation
token) and the student's mask token, which is loaded too.

CNN specs (`spec.family == "cnn"`: the EfficientNet-Lite teachers, `timm:<cnn>`) are built by
`cnn_encoder.build_cnn_encoder` as a `CNNEncoder`, teachers only.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from gkd_deploy.errors import ModelError, WeightsError
from gkd_deploy.models.authors_student import is_distillation_checkpoint, student_tensors
from gkd_deploy.models.cnn_encoder import CNNEncoder, build_cnn_encoder, count_cnn_parameters
from gkd_deploy.models.encoder import ViTEncoder
from gkd_deploy.models.config import DEFAULT_IMG_SIZE, DEFAULT_PATCH_SIZE
from gkd_deploy.models.patch_grid import KERNEL_KEY, POS_KEY, drop_distillation_token, fit_state_dict
from gkd_deploy.models.registry import ModelSpec, get_model_spec
from gkd_deploy.models.weights import check_weights_file, ensure_hub_weights_available, read_state_dict

log = logging.getLogger(__name__)



def create_encoder(
    name: str | ModelSpec,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    patch_size: int = DEFAULT_PATCH_SIZE,
    img_size: int = DEFAULT_IMG_SIZE,
    feature_blocks: Sequence[int] | None = None,
    role: str | None = None,
) -> ViTEncoder | CNNEncoder:
    """A `ViTEncoder` for a zoo name (or spec), running at `patch_size` on `img_size` inputs.

    Weights: `weights` (a local .safetensors/.pth file) wins over `pretrained` (the hub through
    timm); configurations without published weights start random unless a file is given.
    Whatever the weights' patch size, the model runs at `patch_size`, so a teacher and a student
    built at one patch size share one token grid at any input size.

    CNN specs give a `CNNEncoder` (teachers only: `role="student"` is refused) on the same token
    grid; for the zoo's CNNs `pretrained` means the weights in their pip package, never the hub.
    """
    spec = name if isinstance(name, ModelSpec) else get_model_spec(name, role=role)
    if patch_size < 1 or img_size % patch_size:
        raise ModelError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
    if spec.family == "cnn":
        return build_cnn_encoder(spec, pretrained=pretrained, weights=weights, patch_size=patch_size,
                                 img_size=img_size, feature_blocks=feature_blocks, role=role)
    target_kwargs = dict(spec.overrides, patch_size=patch_size, img_size=img_size, dynamic_img_size=True,
                         num_classes=0)
    backbone = _create_timm_model(spec, spec.architecture, "random init", **target_kwargs)
    _check_supported(spec, backbone)
    pretrained_cfg = backbone.pretrained_cfg
    mask_token = None
    source = _weights_source(spec, pretrained, weights)
    if source is not None:
        pretrained_cfg, mask_token = _load_pretrained(spec, backbone, source)
    encoder = ViTEncoder(backbone, mean=pretrained_cfg["mean"], std=pretrained_cfg["std"],
                         feature_blocks=feature_blocks)
    if mask_token is not None:
        if tuple(mask_token.shape) != tuple(encoder.mask_token.shape):
            raise WeightsError(f"weights from {source}: mask token of shape {tuple(mask_token.shape)} does not fit "
                               f"'{spec.name}' ({tuple(encoder.mask_token.shape)})")
        with torch.no_grad():
            encoder.mask_token.copy_(mask_token)
    log.info("encoder %s: %s, %d blocks, width %d, patch %d, weights from %s",
             spec.name, spec.architecture, encoder.depth, encoder.embed_dim, patch_size, source or "random init")
    return encoder


def _weights_source(spec: ModelSpec, pretrained: bool, weights: str | Path | None) -> str | None:
    """A local file path, "hub" or None (random initialisation); checked before anything is loaded."""
    if weights is not None:
        return str(check_weights_file(Path(weights)))
    if pretrained and spec.has_weights:
        ensure_hub_weights_available(f"'{spec.name}'", spec.timm_name)
        return "hub"
    return None


@dataclass(frozen=True)
class _FileWeights:
    """What a weights file gave: its tensors in their own architecture and geometry, whether those
    are a plain ViT's (no distillation token to drop), and the student's mask token if it has one."""

    native: torch.nn.Module
    plain: bool
    mask_token: torch.Tensor | None


def _load_pretrained(spec: ModelSpec, backbone: torch.nn.Module,
                     source: str) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Load the weights into `backbone` (built at our patch and input size); return their pretrained
    cfg and the mask token (1, 1, C) the file holds (our own and the authors' students), else None."""
    if source == "hub":
        # The weights' own architecture, patch size and input size: timm loads them without resampling.
        native = _create_timm_model(spec, spec.timm_name, f"hub ({spec.timm_name})", **spec.overrides,
                                    num_classes=0, pretrained=True)
        loaded = _FileWeights(native, plain=False, mask_token=None)
    else:
        loaded = _native_from_file(spec, Path(source))
    native = loaded.native
    state = native.state_dict()
    if spec.drops_distillation_token and not loaded.plain:
        state = drop_distillation_token(state)
    state = fit_state_dict(state, backbone)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"weights from {source} do not fit '{spec.name}' ({spec.architecture}): missing "
                           f"{missing[:3]}, unexpected {unexpected[:3]}")
    return native.pretrained_cfg, loaded.mask_token


# Where a gkd-deploy checkpoint keeps a backbone's tensors: an encoder (stage 1-2 student), a segmenter.
OWN_PREFIXES = ("encoder.backbone.", "backbone.")


def _backbone_state(state: dict[str, torch.Tensor],
                    path: Path) -> tuple[dict[str, torch.Tensor], bool, torch.Tensor | None]:
    """The backbone's tensors of a weights file, whether they are a plain ViT's, and the mask token.

    The GKD authors' distillation checkpoint ("student.backbone.*", `authors_student`) and our own
    encoder ("backbone.*", "mask_token") and segmenter ("encoder.backbone.*", "encoder.mask_token")
    checkpoints hold a plain ViT (a distilled DeiT's token already dropped); any other file holds
    the architecture's own release (timm's names or the original ones).
    """
    if is_distillation_checkpoint(state):
        student = student_tensors(state, str(path))
        return student.backbone, True, student.mask_token
    for prefix in OWN_PREFIXES:
        if any(key.startswith(prefix) for key in state):
            mask_token = state.get(prefix[:-len("backbone.")] + "mask_token")
            return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}, True, mask_token
    return state, False, None


def _native_from_file(spec: ModelSpec, path: Path) -> _FileWeights:
    """The weights' own architecture with every one of its tensors taken from `path`, strictly.

    The file may hold timm's names, the original release's (timm's checkpoint filter for the
    architecture converts them, e.g. DINOv2's), be one of our own encoder or segmenter checkpoints
    or the GKD authors' distillation checkpoint (its student's backbone tensors are taken, see
    `_backbone_state`). The classifier is left out. A file that does not fill the model is refused
    with the keys that differ: nothing trains from random weights while the log says they came
    from a file.
    """
    state, plain, mask_token = _backbone_state(read_state_dict(path), path)
    # A plain ViT's tensors load into the plain counterpart of a distilled DeiT spec.
    timm_name = _plain_timm_name(spec) if plain else spec.timm_name
    native = _create_timm_model(spec, timm_name, str(path), **{**spec.overrides, **_file_geometry(state)},
                                num_classes=0)
    checkpoint_filter = getattr(sys.modules.get(type(native).__module__), "checkpoint_filter_fn", None)
    if checkpoint_filter is not None:
        try:
            state = checkpoint_filter(state, native)
        except (KeyError, RuntimeError, ValueError) as error:
            raise WeightsError(f"weights from {path} cannot be read as {timm_name}: "
                               f"{error.__class__.__name__}: {error}") from error
    classifier = native.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    state = {key: value for key, value in state.items() if not any(key.startswith(f"{head}.") for head in heads)}
    expected = native.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                  if key in state and state[key].shape != value.shape]
    if missing or unexpected or mismatched:
        raise WeightsError(
            f"weights from {path} do not fit '{spec.name}' ({timm_name}): {len(missing)} of "
            f"{len(expected)} tensors missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"
            + (f", shapes differ: {mismatched[:3]}" if mismatched else "")
            + ". Give a checkpoint of this architecture (timm's names, the original release, a gkd encoder "
              "checkpoint or a GKD distillation checkpoint), or choose the student it was trained as.")
    native.load_state_dict(state, strict=True)
    return _FileWeights(native, plain, mask_token)


def _plain_timm_name(spec: ModelSpec) -> str:
    """`spec.timm_name` with a distilled DeiT's architecture replaced by its plain counterpart, tag kept."""
    tag = spec.timm_name.split(".", 1)[1:]
    return ".".join([spec.architecture, *tag])


def _file_geometry(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The patch and input size a ViT state dict was saved at (from its kernel and square position
    grid), so that the weights load into their own geometry without a resampling round trip; {}
    when the file does not say (timm's filter then resamples to the architecture's default)."""
    kernel, pos_embed = state.get(KERNEL_KEY), state.get(POS_KEY)
    if kernel is None or pos_embed is None or kernel.ndim != 4 or pos_embed.ndim != 3:
        return {}
    side = math.isqrt(pos_embed.shape[1])  # prefix tokens (class, distillation) are fewer than 2 * side
    return {"patch_size": int(kernel.shape[-1]), "img_size": side * int(kernel.shape[-1])}


def _create_timm_model(spec: ModelSpec, timm_name: str, source: str, **kwargs) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(timm_name, **kwargs)
    except RuntimeError as error:
        if not kwargs.get("pretrained"):
            raise ModelError(f"cannot build '{spec.name}' ({timm_name}): {error}") from error
        # load_state_dict's message lists missing/unexpected keys and shape mismatches.
        first_lines = " ".join(str(error).splitlines()[:3])[:400]
        raise WeightsError(
            f"weights from {source} do not fit '{spec.name}' ({spec.architecture}): {first_lines}. "
            f"Check that the file holds {spec.architecture} weights."
        ) from error
    except TypeError as error:
        # Non-ViT architectures take no patch_size / img_size / dynamic_img_size.
        raise ModelError(f"'{spec.name}' is not a plain ViT timm can build at a given patch size ({error}); "
                         "gkd-deploy supports timm's VisionTransformer and Eva families") from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot load weights for '{spec.name}' from {source}: {error}") from error


def _check_supported(spec: ModelSpec, backbone: torch.nn.Module) -> None:
    needed = ("patch_embed", "blocks", "norm", "_pos_embed", "num_prefix_tokens")
    missing = [attr for attr in needed if not hasattr(backbone, attr)]
    if missing or getattr(backbone, "cls_token", None) is None:
        raise ModelError(
            f"'{spec.name}' ({type(backbone).__name__}) is not a plain ViT with a class token; "
            "gkd-deploy supports timm's VisionTransformer and Eva families"
        )


def count_parameters(spec: ModelSpec, patch_size: int = DEFAULT_PATCH_SIZE, img_size: int = 224) -> int:
    """Parameter count of a zoo model, built on the meta device (no memory, no weights).

    For a CNN: the encoder as it runs (layers after the token map and the classifier excluded)."""
    import timm

    if spec.family == "cnn":
        return count_cnn_parameters(spec)

    kwargs = dict(spec.overrides, patch_size=patch_size, img_size=img_size, num_classes=0)
    with torch.device("meta"):
        model = timm.create_model(spec.architecture, **kwargs)
    return sum(p.numel() for p in model.parameters())
