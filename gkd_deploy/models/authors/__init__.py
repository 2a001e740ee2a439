"""The GKD authors' released checkpoints (github Younger-hua/GKD; the Hugging Face hub's
`yongers/GKD`), read into our models. Facts come from their code; the code here is our own.

- `student.py`: a distillation checkpoint (stages 1-2, `general_distillation/main.py`) -> the
  student's backbone tensors under timm's names, for `create_encoder(weights=...)` and
  `--student-weights`;
- `mask2former.py`: a task-learning checkpoint (stage 3, mmsegmentation with mmdet's
  `Mask2FormerHead`) -> a gkd segmenter, for `gkd models import`.
"""
