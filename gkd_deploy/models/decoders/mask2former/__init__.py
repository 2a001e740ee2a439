"""Mask2Former decoder for plain-ViT students: deformable pixel decoder + masked-attention
transformer decoder, trained with a Hungarian-matched set loss; pure PyTorch, ONNX-exportable.

Files, one job each:
- `decoder.py`: `Mask2FormerDecoder` (the decoder interface of `..base`), built from its
  `Mask2FormerOptions` (`models.decoder_options`, with `EDGE_PRESET`);
- `pixel_decoder.py`: pyramid projections, deformable encoder, FPN step, mask features;
- `deformable_attention.py`: multi-scale deformable attention via `grid_sample`;
- `position_encoding.py`: sine position embeddings;
- `transformer_decoder.py`: queries, masked attention layers, prediction head;
- `targets.py`: label maps -> per-class target masks;
- `matcher.py`: Hungarian matching on class, BCE and Dice costs;
- `point_sampling.py`: point sampling of maps, uniform and uncertainty-based points;
- `criterion.py`: the set losses (CE with a "no object" weight, point BCE and Dice, auxiliary).
"""

from gkd_deploy.models.decoder_options import EDGE_PRESET, Mask2FormerOptions
from gkd_deploy.models.decoders.mask2former.decoder import Mask2FormerDecoder, semantic_scores, set_outputs

__all__ = ["EDGE_PRESET", "Mask2FormerDecoder", "Mask2FormerOptions", "semantic_scores", "set_outputs"]
