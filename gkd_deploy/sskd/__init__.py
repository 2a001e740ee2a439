"""Semi-supervised knowledge distillation of an instance segmenter (SSKD, the second seed paper).

Files, one job each:
- `config.py`: `InstanceTrainConfig`, the phases and their settings (torch-free);
- `recipes.py`: the recipe and its stage ablations as phase subsets (`gkd train --task instance --recipe`);
- `data.py`: labelled and pseudo-labelled batches (instances as id maps through one augmentation);
- `pseudo.py`: the teacher's labels of the unlabelled pool, kept in the run folder;
- `objective.py`: the unified loss (L_sup + L_pseudo + L_pxl) and its per-image view randomness;
- `phases.py`: finetune, selftrain, transfer, refine, each resumable, run by `training.trainer`.
"""
