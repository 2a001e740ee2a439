"""`gkd compare`: GKD and the paper's baselines trained with one teacher, student, data, budget and
seeds, one run folder each, scored on the same unseen domains (the paper's Table 1)."""

from gkd_deploy.compare.report import CompareReport, RunScore
from gkd_deploy.compare.runner import CompareSettings, PlannedRun, plan_compare, run_compare

__all__ = ["CompareReport", "CompareSettings", "PlannedRun", "RunScore", "plan_compare", "run_compare"]
