"""The study's latency cost model: calibrated once per study and device, stored in the study.

With `latency="model"` (new studies) every candidate's latency is predicted from its plan
(`objectives.costmodel`), so NSGA-II never ranks two candidates on timing noise and the
full-compute anchor is exactly 1.00x; the exported front is re-measured end to end on held-out
images (`studies.heldout`). `latency="measured"` keeps per-trial timing.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna

from ..objectives import measure_latency, steady_clock, timing_session
from ..objectives.costmodel import CostModel, calibrate
from ..search.attrs import COSTMODEL_ATTR
from ..search.evaluator import Evaluator
from .build import SEARCH_SOLVERS, scheduler_calls
from .config import StudyConfig

LATENCY_MODES = ("model", "measured")


CALIBRATION_ROUNDS = 3  # interleaved timing rounds of the design (median); R² stays ≥ 0.99 on the embedded model


def calibration_steps(steps: int) -> list[int]:
    """Two step counts for the design: a short trajectory and the study's own."""
    return sorted({max(2, min(10, steps // 2)), steps})


def cost_model_for(study: optuna.Study, evaluator: Evaluator, pipe: Any, config: StudyConfig) -> CostModel:
    """The model stored in the study, else calibrated now on this process's pipeline and stored."""
    stored = study.user_attrs.get(COSTMODEL_ATTR)
    if stored is not None:
        return CostModel.from_dict(stored)
    device = pipe.device
    clock = steady_clock(device)

    def time_once(schedule: Any) -> float:
        return evaluator.measured_latency(schedule, lambda run: measure_latency(run, device, 0, 1, clock=clock).median_s)

    schedulers = list(dict.fromkeys([config.scheduler, *SEARCH_SOLVERS]))
    with timing_session(device):  # one thread-count switch for the whole design
        model = calibrate(time_once, pipe.unet, functools.partial(scheduler_calls, pipe), schedulers,
                          calibration_steps(config.steps), branches=config.encoding.get("branches", [0]),
                          device=config.device, repeats=CALIBRATION_ROUNDS)
    study.set_user_attr(COSTMODEL_ATTR, model.to_dict())
    return model


def use_cost_model(study: optuna.Study, evaluator: Evaluator, pipe: Any, config: StudyConfig) -> CostModel | None:
    """Make the evaluator predict latency with the study's cost model (`latency="model"`)."""
    if config.latency_mode != "model" or "latency" not in config.objectives:
        return None
    model = cost_model_for(study, evaluator, pipe, config)
    n_calls = config.encoding["n_calls"]  # full compute (schedule None) on the study's own trajectory
    evaluator.latency_model = lambda schedule: model.predict(schedule, n_calls=None if schedule else n_calls)
    return model
