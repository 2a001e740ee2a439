"""GKD training: two distillation stages of the student encoder, then the frozen-encoder task stage."""
