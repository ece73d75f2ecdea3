"""Build a run in one place: resolve the configuration, open or create the study, build the evaluator.

`datosearch run | resume | worker` and `bench/search.py` all start here, so a study is wired the same
way wherever it runs: the stored configuration wins on resume, anchors (with the tuned fewer-steps
ones, `studies.tuning`) and the first generation are enqueued once at creation, and the evaluator's
reference images are cached beside the study.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import optuna

from ..search.anchors import anchor_schedules
from ..search.attrs import COSTMODEL_ATTR
from ..search.evaluator import Evaluator
from . import build, study as studies
from .config import StudyConfig
from .cost import use_cost_model
from . import resolve as resolving
from .storage import study_dir
from .refine import CALLS as REFINED_CALLS, refined_members
from .tuning import STEPS as TUNED_STEPS, tuned_anchors


def refined_calls(config: StudyConfig) -> list[int]:
    """The full-call counts of `studies.refine`'s members: only in a study that searches the trajectory
    and may reuse, and below half its own calls (as the forecasting members of the first generation)."""
    enc = config.encoding
    if enc.get("kind") != "structured" or len(enc.get("trajectories") or []) < 2 or not enc.get("allow_reuse", True):
        return []
    return [k for k in REFINED_CALLS if k < enc["n_calls"] / 2]


def _log(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Run:
    """A study ready to run: its configuration, pipeline, evaluator, and whether it was just created."""

    study: optuna.Study
    config: StudyConfig
    pipe: Any
    evaluator: Evaluator
    created: bool


def open_run(url: str, name: str, opts: dict[str, Any], resume: bool = False, pipe: Any = None,
             evaluator: Evaluator | None = None, cost_model: dict[str, Any] | None = None) -> Run:
    """Resolve `opts` (on top of the stored configuration when resuming), then open or create the study.

    A study that exists with another configuration is refused (`StudyConfigError`) before anything is
    written. The benchmarks share across studies of one model and calibration batch: `pipe` (a loaded
    pipeline), `evaluator` (its references) and `cost_model` (a stored `CostModel.to_dict()` for a
    new study, instead of calibrating again).
    """
    base = studies.stored_config(studies.open_study(url, name)) if resume else None
    config, pipe = resolving.resolve(opts, base, pipe=pipe)
    studies.directions(config.objectives)  # unknown objectives fail before anything is written
    study = studies.check_existing(url, name, config)
    evaluator = evaluator or build.build_evaluator(pipe, config, study_dir(url, name), str(pipe.device))
    created = study is None
    if created:
        anchors = anchor_schedules(pipe.unet, config.encoding["n_calls"], build.fewer_steps(pipe, config.steps))
        anchors += tuned_anchors(pipe, config, evaluator.reference, study_dir(url, name),
                                 steps=[s for s in TUNED_STEPS if s < config.steps], log=_log)
        members = refined_members(pipe, config, evaluator.reference, study_dir(url, name),
                                  calls=refined_calls(config), log=_log)
        study = studies.create(url, name, config, anchors, members)
        if cost_model is not None:
            study.set_user_attr(COSTMODEL_ATTR, cost_model)
    use_cost_model(study, evaluator, pipe, config)
    return Run(study, config, pipe, evaluator, created)
