"""Distillation of a frozen teacher into the student encoder (GKD stages 1 and 2)."""
