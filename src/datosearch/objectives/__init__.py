"""Objectives of a schedule search: FID-proxy, its feature shift, paired image metrics, latency and a counted MACs cost.

A study optimises one to three of `OBJECTIVES` (name -> Optuna direction); `DEFAULT_OBJECTIVES`
is PSNR against the reference + latency + feature shift (the calibration PSNR ranks held-out PSNR against the
converged reference at Kendall τ 0.98 over 45 schedules, the FID-proxy at 0.82: `bench/proxy_agreement.py`);
`realism` (the Fréchet distance of the images' features from real images', estimated as a paired shift from
a larger reference sample: `RealismDistance`) is opt-in. `objective_directions(names)` validates a choice and gives the directions.
"""

from __future__ import annotations

from typing import Sequence

from .errors import ObjectiveError
from .features import INCEPTION_WEIGHTS_ENV, ConvRandomFeatures, get_extractor
from .fid import FidProxy, check_images, load_stats
from .latency import (Latency, device_name, generation_threads, measure_latency, set_timing_threads, speedup,
                      steady_clock, timing_session)
from .macs import call_macs, count_macs
from .paired import paired_metrics
from .shift import FeatureShift, RealismDistance
from .reference import load_or_compute_reference, reference_key, reference_path

OBJECTIVES: dict[str, str] = {"fid": "minimize", "latency": "minimize", "macs": "minimize",
                              "psnr": "maximize", "adherence": "maximize", "shift": "minimize",
                              "realism": "minimize"}
DEFAULT_OBJECTIVES: tuple[str, ...] = ("psnr", "latency", "shift")


def objective_directions(names: Sequence[str] = DEFAULT_OBJECTIVES) -> list[str]:
    """Optuna directions for 1-3 distinct objective names from `OBJECTIVES`; `ObjectiveError` otherwise."""
    names = list(names)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ObjectiveError(f"unknown objective(s) {', '.join(map(repr, unknown))}; choose from {', '.join(OBJECTIVES)}")
    if not 1 <= len(names) <= 3 or len(set(names)) != len(names):
        raise ObjectiveError(f"choose one to three distinct objectives, got {names}")
    return [OBJECTIVES[n] for n in names]


__all__ = ["DEFAULT_OBJECTIVES", "INCEPTION_WEIGHTS_ENV", "OBJECTIVES", "ConvRandomFeatures", "FeatureShift",
           "FidProxy", "Latency", "ObjectiveError", "call_macs", "check_images", "count_macs", "device_name",
           "generation_threads", "get_extractor", "load_or_compute_reference", "load_stats", "measure_latency",
           "objective_directions", "paired_metrics", "RealismDistance", "reference_key", "reference_path", "set_timing_threads", "speedup",
           "steady_clock", "timing_session"]
