"""Candidate evaluation, samplers, anchor schedules, the ask/tell loop with dedup, and hypervolume."""

from .anchors import anchor_schedules
from .evaluator import Calibration, CandidateError, Evaluation, Evaluator, generate
from .pareto import hypervolume, reference_point, study_hypervolume
from .liveness import sweep_stale
from .runner import Deadline, TrialRecord, complete_count, enqueue_anchors, run_trial, run_until
from .samplers import SAMPLERS, make_sampler

__all__ = ["SAMPLERS", "Calibration", "CandidateError", "Deadline", "Evaluation", "Evaluator", "TrialRecord",
           "anchor_schedules", "enqueue_anchors", "generate", "hypervolume", "make_sampler", "sweep_stale", "complete_count", "reference_point",
           "run_trial", "run_until", "study_hypervolume"]
