"""Pareto fronts and hypervolume of objective vectors (Optuna exposes no public hypervolume function).

Values are first turned into "minimise" form (maximised objectives negated); the hypervolume is
exact: a sweep in 2-D, slicing along the first axis in higher dimensions (fronts here are small).
"""

from __future__ import annotations

from typing import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .attrs import ANCHOR_ATTR

Point = tuple[float, ...]


def as_minimised(values: Sequence[float], directions: Sequence[StudyDirection]) -> Point:
    return tuple(v if d == StudyDirection.MINIMIZE else -v for v, d in zip(values, directions))


def point_dominates(a: Point, b: Point) -> bool:
    """`a` is no worse than `b` anywhere and better somewhere (both minimised)."""
    return a != b and all(x <= y for x, y in zip(a, b))


def dominates(a: FrozenTrial, b: FrozenTrial, directions: Sequence[StudyDirection]) -> bool:
    """Constrained dominance, as NSGA-II ranks trials: the smaller total constraint violation wins, then a
    trial with values over one without, then Pareto dominance of the values."""
    va, vb = _violation(a), _violation(b)
    if va != vb:
        return va < vb
    if a.values is None or b.values is None:
        return a.values is not None
    return point_dominates(as_minimised(a.values, directions), as_minimised(b.values, directions))


def _violation(trial: FrozenTrial) -> float:
    return sum(max(0.0, c) for c in trial.constraints.values())


def non_dominated(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates (all minimised), duplicates removed."""
    unique = sorted(set(points))
    return [p for p in unique if not any(point_dominates(q, p) for q in unique)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Volume dominated by `points` and bounded by `reference` (all minimised)."""
    pts = non_dominated([p for p in points if all(a < r for a, r in zip(p, reference))])
    if not pts:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in pts)
    if len(reference) == 2:
        area, prev_y = 0.0, reference[1]
        for x, y in sorted(pts):
            if y < prev_y:
                area += (reference[0] - x) * (prev_y - y)
                prev_y = y
        return area
    xs = sorted({p[0] for p in pts}) + [reference[0]]
    volume = 0.0
    for lo, hi in zip(xs, xs[1:]):
        slab = [p[1:] for p in pts if p[0] <= lo]
        volume += (hi - lo) * hypervolume(slab, reference[1:])
    return volume


def feasible_complete(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and all(c <= 0 for c in t.constraints.values())]


def pareto_trials(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The feasible completed trials no other one dominates (as `Study.best_trials`, over `trials` only)."""
    done = feasible_complete(trials)
    points = [as_minimised(t.values, directions) for t in done]
    kept = set(non_dominated(points))
    return [t for t, p in zip(done, points) if p in kept]


def reference_point(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], margin: float = 0.1) -> Point:
    """Worst value per objective over the anchor trials (all trials if none), widened by `margin`."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    anchors = [t for t in done if t.user_attrs.get(ANCHOR_ATTR)] or done
    if not anchors:
        return tuple(1.0 for _ in directions)
    worst = [max(col) for col in zip(*(as_minimised(t.values, directions) for t in anchors))]
    return tuple(w + margin * max(abs(w), 1e-9) for w in worst)


def study_hypervolume(study: optuna.Study, reference: Point | None = None) -> float:
    """Hypervolume of the study's feasible completed trials."""
    trials = study.get_trials(deepcopy=False)
    reference = reference or reference_point(trials, study.directions)
    return hypervolume([as_minimised(t.values, study.directions) for t in feasible_complete(trials)], reference)
