"""The instance segmenter of SSKD's student: ViT encoder -> pyramid -> Mask2Former in instance mode.

    images (B, 3, H, W) 0-255
      -> ViTEncoder.forward_features: 4 block maps at stride 16 (trained end to end)
      -> neck: "dpt" (`dpt.DPTHead`, learned reassembly and fusion, SSKD's DPT-S head) or
         "pyramid" (the parameter-free resize of `pyramid.vit_pyramid`, inside the decoder)
      -> Mask2Former pixel decoder + transformer decoder: per query class logits over C thing
         classes + "no object" (B, Q, C+1) and mask logits at stride 4 (B, Q, H/4, W/4)
      -> (inference) `instance_predictions`: K masks, classes and scores per image
    training only: `PixelProjectionHead` on the stride-4 mask features -> unit pixel embeddings
    (B, D, H/4, W/4) for L_pxl; not used by `forward` and so never in an exported graph.

Like `Segmenter`, the model is rebuilt from its config alone (`InstanceSegmenterConfig`, stored in
every checkpoint; it lives in the torch-free `models.config`, so an exported file's config reads back
where only ONNX Runtime is installed), and the config is checked when it is made.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gkd_deploy.errors import ConfigError, ModelError
from gkd_deploy.instance.postprocess import instance_predictions
from gkd_deploy.instance.projection import PixelProjectionHead
from gkd_deploy.models.builder import create_encoder
from gkd_deploy.models.config import InstanceSegmenterConfig
from gkd_deploy.models.decoders import build_decoder
from gkd_deploy.models.decoders.mask2former import set_outputs
from gkd_deploy.models.dpt import DPTHead
from gkd_deploy.models.encoder import ViTEncoder
from gkd_deploy.models.segmenter import ClassesOfConfig


class InstanceSegmenter(ClassesOfConfig, nn.Module):
    """Encoder -> neck -> Mask2Former decoder -> per-query classes and masks.

    Input: (B, 3, H, W) float RGB in 0..255, H and W multiples of the patch size.
    `forward` -> class logits (B, Q, C+1), mask logits (B, Q, H/4, W/4): what an export
    post-processes in its graph; `predict` -> the K instances; `forward_train` -> the set loss's
    input plus the pixel embeddings.
    """

    task = "instance"  # what an export's metadata says (`runtime.metadata.TASK_OUTPUTS`)

    def __init__(self, encoder: ViTEncoder, neck: nn.Module, decoder: nn.Module, config: InstanceSegmenterConfig,
                 projection: PixelProjectionHead | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = neck
        self.decoder = decoder
        self.projection = projection
        self.config = config

    def _mask_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = self.neck(self.encoder.forward_features(images))
        return self.decoder.pixel_decoder(maps)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> class logits (B, Q, C+1), mask logits (B, Q, H/4, W/4), the final prediction."""
        mask_features, levels = self._mask_features(images)
        return self.decoder.transformer(mask_features, levels)[-1]

    def forward_train(self, images: torch.Tensor) -> dict[str, Any]:
        """(B, 3, H, W) -> {"pred_logits", "pred_masks", "aux_outputs"} (`InstanceCriterion`'s input)
        and, with a projection head, "pixel_embeddings" (B, D, H/4, W/4) of unit length along D."""
        mask_features, levels = self._mask_features(images)
        outputs = set_outputs(self.decoder.transformer(mask_features, levels))
        if self.projection is not None:
            outputs["pixel_embeddings"] = self.projection(mask_features)
        return outputs

    def set_dropout(self, rate: float) -> None:
        """The transformer decoder's dropout in training mode, in [0, 1) (0 as built); a training
        setting (SSKD's knowledge transfer uses 0.1), not part of the saved weights or config."""
        self.decoder.transformer.set_dropout(rate)

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> masks (B, K, H, W) bool, classes (B, K) int64, scores (B, K), with the
        config's top_k and mask threshold (the same function an export runs in its graph)."""
        class_logits, mask_logits = self(images)
        return instance_predictions(class_logits, mask_logits, tuple(images.shape[-2:]), top_k=self.config.top_k,
                                    mask_threshold=self.config.mask_threshold)


def encoder_role(name: str) -> str:
    """The zoo role an instance segmenter's encoder is built in: any ViT of the zoo (a student's, or
    a teacher's for SSKD's larger teacher); ModelError for an unknown name or a CNN."""
    from gkd_deploy.models.registry import get_model_spec

    spec = get_model_spec(name)
    if spec.family == "cnn":
        raise ModelError(f"'{name}' is a CNN ({spec.architecture}); an instance segmenter's DPT / pyramid neck "
                         "reads ViT blocks: choose a ViT (e.g. vit-s, vit-b, dinov2-b)")
    return "student" if "student" in spec.roles else "teacher"


def build_instance_segmenter(config: InstanceSegmenterConfig, *, pretrained: bool = False,
                             weights: str | None = None) -> InstanceSegmenter:
    """Build from a config; the encoder gets pretrained (or file) weights only when asked."""
    encoder = create_encoder(config.encoder, pretrained=pretrained, weights=weights, patch_size=config.patch_size,
                             img_size=config.img_size, feature_blocks=config.feature_blocks,
                             role=encoder_role(config.encoder))
    num_levels = len(encoder.feature_blocks)
    if config.neck == "dpt":
        if num_levels != 4:
            raise ConfigError(f"instance segmenter config: the DPT head takes 4 feature blocks, got {num_levels}")
        neck, channels, multiscale = DPTHead(encoder.embed_dim, config.neck_channels), config.neck_channels, True
    else:
        # The decoder's own pixel decoder resizes the four maps (`vit_pyramid`).
        neck, channels, multiscale = nn.Identity(), encoder.embed_dim, False
    decoder = build_decoder(config.decoder, config.decoder_settings(), in_channels=channels, num_levels=num_levels,
                            num_classes=config.class_set.num_classes, multiscale_inputs=multiscale)
    projection = None
    if config.projection_dim is not None:
        projection = PixelProjectionHead(decoder.pixel_decoder.mask_features.out_channels, config.projection_dim)
    return InstanceSegmenter(encoder, neck, decoder, config, projection)

