"""Optuna encodings of a schedule: genes → `Schedule`, `Schedule` → genes (for enqueueing anchors).

Two cache-plan encodings share the pruning genes:

- ``"calls"``: one categorical gene per U-Net call ``c{t}`` (t ≥ 1; call 0 is always full) with choices
  ``"full"``, ``"reuse"`` and ``"b{branch}"`` (DeepCache shallow step with that branch);
- ``"intervals"``: segment genes ``seg{k}`` (length, 1..max_interval) and ``act{k}`` (what the
  non-first calls of the segment do); each segment starts with a full call, segments are laid
  out until every call is covered and the rest are ignored (so the genome has a fixed size).

Pruning: one categorical gene ``r:{block}`` per searched block over `RATIO_STEPS`, and, if
``call_scale`` is on, one multiplier gene ``s{t}`` per call. Constraints (max consecutive
non-full calls, min full calls) are reported with `optuna.trial.Trial.set_constraint`; a value
> 0 is a violation and NSGA-II/NSGA-III/TPE/GP treat the trial as infeasible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import optuna

from .schedule import FULL, REUSE, Action, PruneConfig, Schedule

RATIO_STEPS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75)
SCALE_STEPS = (0.5, 1.0, 1.5)
KINDS = ("calls", "intervals")


@dataclass
class EncodingConfig:
    """What the search may change, and the feasibility constraints. JSON-serialisable."""

    n_calls: int
    blocks: list[str] = field(default_factory=list)
    kind: str = "calls"
    branches: list[int] = field(default_factory=lambda: [0])
    allow_reuse: bool = True
    ratio_steps: list[float] = field(default_factory=lambda: list(RATIO_STEPS))
    call_scale: bool = False
    scale_steps: list[float] = field(default_factory=lambda: list(SCALE_STEPS))
    max_interval: int = 6
    max_nonfull_run: int | None = None
    min_full: int = 1
    noise_alpha: float = 0.1
    base_selection: str = "dynamics"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoding kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_calls < 1:
            raise ValueError(f"n_calls must be >= 1, got {self.n_calls}")
        if not self.branches and not self.allow_reuse and self.kind == "intervals":
            raise ValueError("the intervals encoding needs at least one branch or reuse")
        self.blocks, self.branches = list(self.blocks), [int(b) for b in self.branches]
        self.ratio_steps = [float(r) for r in self.ratio_steps]
        self.scale_steps = [float(s) for s in self.scale_steps]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def actions(self) -> list[str]:
        """Choices of a non-full call: shallow branches, then reuse."""
        return [f"b{b}" for b in self.branches] + ([REUSE] if self.allow_reuse else [])


# ------------------------------------------------------------------ genes <-> actions
def _action(gene: str) -> Action:
    return int(gene[1:]) if gene.startswith("b") else gene


def _gene(action: Action) -> str:
    return action if isinstance(action, str) else f"b{action}"


def distributions(cfg: EncodingConfig) -> dict[str, optuna.distributions.CategoricalDistribution]:
    """Every gene of the encoding and its categorical choices (a fixed-size genome)."""
    cat = optuna.distributions.CategoricalDistribution
    dists: dict[str, Any] = {}
    if cfg.kind == "calls":
        for t in range(1, cfg.n_calls):
            dists[f"c{t}"] = cat([FULL] + cfg.actions)
    else:
        for k in range(cfg.n_calls):
            dists[f"seg{k}"] = cat(list(range(1, cfg.max_interval + 1)))
            dists[f"act{k}"] = cat(cfg.actions)
    for block in cfg.blocks:
        dists[f"r:{block}"] = cat(cfg.ratio_steps)
    if cfg.call_scale:
        for t in range(cfg.n_calls):
            dists[f"s{t}"] = cat(cfg.scale_steps)
    return dists


def _cache_plan(params: Mapping[str, Any], cfg: EncodingConfig) -> list[Action]:
    if cfg.kind == "calls":
        return [FULL] + [_action(params[f"c{t}"]) for t in range(1, cfg.n_calls)]
    plan: list[Action] = []
    k = 0
    while len(plan) < cfg.n_calls:
        plan += [FULL] + [_action(params[f"act{k}"])] * (int(params[f"seg{k}"]) - 1)
        k += 1
    return plan[: cfg.n_calls]


def decode(params: Mapping[str, Any], cfg: EncodingConfig, **meta: Any) -> Schedule:
    """Build the schedule that a complete set of genes describes."""
    ratios = {b: float(params[f"r:{b}"]) for b in cfg.blocks if float(params[f"r:{b}"]) > 0}
    scale = [float(params[f"s{t}"]) for t in range(cfg.n_calls)] if cfg.call_scale and ratios else None
    prune = PruneConfig(ratios=ratios, call_scale=scale, noise_alpha=cfg.noise_alpha,
                        base_selection=cfg.base_selection)
    return Schedule(_cache_plan(params, cfg), prune, meta=dict(meta))


def suggest(trial: optuna.Trial, cfg: EncodingConfig) -> Schedule:
    """Sample (or take the enqueued) genes of `trial`, decode them and report the constraints."""
    params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in distributions(cfg).items()}
    schedule = decode(params, cfg)
    for key, value in constraint_values(schedule, cfg).items():
        trial.set_constraint(key, value)
    return schedule


# ------------------------------------------------------------------ schedule -> genes
def _nearest(value: float, steps: list[float]) -> float | None:
    match = [s for s in steps if abs(s - value) < 1e-9]
    return match[0] if match else None


def _interval_genes(plan: list[Action], cfg: EncodingConfig) -> dict[str, Any] | None:
    starts = [t for t, a in enumerate(plan) if a == FULL]
    params: dict[str, Any] = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(plan)
        rest = set(plan[start + 1:end])
        if end - start > cfg.max_interval or len(rest) > 1:
            return None
        gene = _gene(rest.pop()) if rest else cfg.actions[0]
        if gene not in cfg.actions:
            return None
        params[f"seg{k}"], params[f"act{k}"] = end - start, gene
    for k in range(len(starts), cfg.n_calls):  # unused tail segments: a fixed filler
        params[f"seg{k}"], params[f"act{k}"] = 1, cfg.actions[0]
    return params


def encode(schedule: Schedule, cfg: EncodingConfig) -> dict[str, Any] | None:
    """Genes that decode to `schedule`, or None if the encoding cannot express it exactly."""
    if schedule.n_calls != cfg.n_calls or set(schedule.prune.ratios) - set(cfg.blocks):
        return None
    p = schedule.prune
    if (p.noise_alpha, p.base_selection, p.sx, p.sy) != (cfg.noise_alpha, cfg.base_selection, 2, 2):
        return None
    if cfg.kind == "calls":
        params: dict[str, Any] | None = {f"c{t}": _gene(schedule.cache[t]) for t in range(1, cfg.n_calls)}
        if any(g not in [FULL] + cfg.actions for g in params.values()):
            return None
    else:
        params = _interval_genes(schedule.cache, cfg)
        if params is None:
            return None
    for block in cfg.blocks:
        step = _nearest(p.ratios.get(block, 0.0), cfg.ratio_steps)
        if step is None:
            return None
        params[f"r:{block}"] = step
    if cfg.call_scale:
        scale = p.call_scale or [1.0] * cfg.n_calls
        steps = [_nearest(s, cfg.scale_steps) for s in scale]
        if None in steps:
            return None
        params.update({f"s{t}": s for t, s in enumerate(steps)})
    elif p.call_scale is not None:
        return None
    return params if decode(params, cfg).key() == schedule.key() else None


# ------------------------------------------------------------------ constraints
def longest_nonfull_run(plan: list[Action]) -> int:
    best = run = 0
    for action in plan:
        run = 0 if action == FULL else run + 1
        best = max(best, run)
    return best


def constraint_values(schedule: Schedule, cfg: EncodingConfig) -> dict[str, float]:
    """Optuna constraint values (≤ 0 feasible) for the configured limits."""
    out = {"min_full": float(cfg.min_full - schedule.counts()["full"])}
    if cfg.max_nonfull_run is not None:
        out["max_nonfull_run"] = float(longest_nonfull_run(schedule.cache) - cfg.max_nonfull_run)
    return out
