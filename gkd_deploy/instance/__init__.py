"""Instance segmentation for semi-supervised distillation (SSKD): set loss, post-processing,
mask AP, and the instance-aware pixel contrastive loss with its two views.

Files, one job each:
- `matching.py`: instance targets (classes, masks) per image and their Hungarian matching;
- `criterion.py`: `InstanceCriterion`, Mask2Former's set loss against instances (L_sup, L_pseudo);
- `postprocess.py`: logits -> top-k masks, classes, scores (`instance_predictions`), exportable;
- `ap.py`: COCO mask AP / AP50 through pycocotools (`mask_ap`, `MaskAPAccumulator`);
- `views.py`: weak / strong views with tracked correspondence (`ViewAugmentation`, `ViewPair`);
- `projection.py`: the training-only `PixelProjectionHead`;
- `contrastive.py`: `PixelContrastiveLoss`, the instance-aware negative sampler and the optional
  memory of earlier steps' pixels (`NegativeMemory`);
- `teacher.py`: what a pseudo-labelling teacher gives (`PseudoInstances`, `InstanceTeacher`), and
  the project's own instance segmenter as one (`SegmenterTeacher`);
- `grounded_sam.py`: the paper's composite teacher, Grounding-DINO boxes + SAM2 masks
  (`GroundedSAMTeacher`, `grounded_sam_teacher`; the optional extra `grounded-sam`, whose
  transformers is imported only when a teacher is loaded).

The model these serve is `gkd_deploy.models.instance_segmenter.InstanceSegmenter`; its mask AP per
domain and its exports' AP gate are in `gkd_deploy.evaluation.instances`.
"""

from gkd_deploy.instance.ap import MaskAP, MaskAPAccumulator, mask_ap
from gkd_deploy.instance.contrastive import (
    NEGATIVE_SAMPLINGS,
    ContrastiveSample,
    NegativeMemory,
    NegativeSampling,
    PixelContrastiveLoss,
    contrastive_loss,
    instance_descriptors,
    sample_negatives,
)
from gkd_deploy.instance.criterion import InstanceCriterion
from gkd_deploy.instance.grounded_sam import GroundedSAMTeacher, grounded_sam_teacher
from gkd_deploy.instance.matching import instance_targets, match_instances
from gkd_deploy.instance.postprocess import InstancePostprocess, instance_predictions
from gkd_deploy.instance.projection import PixelProjectionHead
from gkd_deploy.instance.teacher import InstanceTeacher, PseudoInstances
from gkd_deploy.instance.views import View, ViewAugmentation, ViewPair

__all__ = [
    "NEGATIVE_SAMPLINGS", "ContrastiveSample", "GroundedSAMTeacher", "InstanceCriterion", "InstancePostprocess",
    "InstanceTeacher", "MaskAP", "MaskAPAccumulator", "NegativeMemory", "NegativeSampling", "PixelContrastiveLoss",
    "PixelProjectionHead", "PseudoInstances", "View", "ViewAugmentation", "ViewPair", "contrastive_loss",
    "grounded_sam_teacher", "instance_descriptors", "instance_predictions", "instance_targets", "mask_ap",
    "match_instances", "sample_negatives",
]
