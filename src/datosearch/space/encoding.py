"""Optuna encodings of a schedule: a shared config, a small base class, a registry by name.

Each encoding (one module each) turns genes into a `Schedule` and back:

- ``"structured"`` (`space.structured`, the default): number of full calls, their placement by a
  warp of normalized time (optionally ending on the last call), per-phase action with forecast
  order and damping, optionally the base trajectory (scheduler and step count); its own NSGA-II
  variation (`search.variation`);
- ``"calls"`` (`space.calls`): one categorical gene per U-Net call;
- ``"intervals"`` (`space.intervals`): segment lengths plus one action per segment.

All share the pruning genes: one categorical ``r:{block}`` per searched block over `RATIO_STEPS`
and, with ``call_scale``, a multiplier ``s{t}`` per call. Constraints (max consecutive non-full
calls, min full calls) go through `optuna.trial.Trial.set_constraint` (> 0 is a violation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from .schedule import FULL, REUSE, Action, PruneConfig, Schedule

RATIO_STEPS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75)
SCALE_STEPS = (0.5, 1.0, 1.5)
DAMPING_STEPS = (0.25, 0.5, 0.75, 1.0)
PHASES = 3  # early / middle / late thirds of the trajectory, each with its own action and forecast genes
KINDS = ("structured", "calls", "intervals")


@dataclass
class EncodingConfig:
    """What the search may change, and the feasibility constraints. JSON-serialisable.

    `trajectories` (structured only) lists the base trajectories the search may pick, each
    `{"scheduler": class name, "steps": int, "calls": int}`; the first is the study's own. Empty:
    the study's own trajectory only. `last_gene` (structured only) adds the gene ``last``: the full
    calls span the whole trajectory, its last call full (studies stored before it lack the gene).
    `timestep_genes` (structured only) adds ``tstart`` and ``tpow``: where the steps of a trajectory
    whose scheduler takes explicit `timesteps` sit (`space.trajectory.warp_timesteps`); studies
    stored before them lack the genes and run those trajectories at the config's default spacing.
    `option_genes` (structured only) adds the listed solvers' config switches (`space.trajectory.SWITCHES`);
    studies stored before them lack the genes and run diffusers' defaults.
    """

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
    orders: list[int] = field(default_factory=lambda: [0, 1, 2])
    damping_steps: list[float] = field(default_factory=lambda: list(DAMPING_STEPS))
    phases: int = PHASES
    trajectories: list[dict[str, Any]] = field(default_factory=list)
    last_gene: bool = False
    timestep_genes: bool = False
    option_genes: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoding kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_calls < 1:
            raise ValueError(f"n_calls must be >= 1, got {self.n_calls}")
        if not self.branches and not self.allow_reuse and self.kind != "calls":
            raise ValueError(f"the {self.kind} encoding needs at least one branch or reuse")
        self.blocks, self.branches = list(self.blocks), [int(b) for b in self.branches]
        self.ratio_steps = [float(r) for r in self.ratio_steps]
        self.scale_steps = [float(s) for s in self.scale_steps]
        self.damping_steps = [float(d) for d in self.damping_steps]
        self.orders = [int(o) for o in self.orders]
        self.trajectories = [dict(t) for t in self.trajectories]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def normalised(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """A stored encoding dict with today's defaults filled in (older studies lack newer fields)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).to_dict()

    @property
    def actions(self) -> list[str]:
        """Choices of a non-full call: shallow branches, then reuse."""
        return [f"b{b}" for b in self.branches] + ([REUSE] if self.allow_reuse else [])


# ------------------------------------------------------------------ genes <-> actions
def action_of(gene: str) -> Action:
    return int(gene[1:]) if gene.startswith("b") else gene


def gene_of(action: Action) -> str:
    return action if isinstance(action, str) else f"b{action}"


def nearest_step(value: float, steps: list[float]) -> float | None:
    """The step equal to `value` (within 1e-9), else None."""
    match = [s for s in steps if abs(s - value) < 1e-9]
    return match[0] if match else None


class Encoding:
    """Genes ↔ schedules for one cache-plan family; the pruning genes and constraints are shared."""

    name = "base"  # the `EncodingConfig.kind` that selects it

    def __init__(self, cfg: EncodingConfig) -> None:
        self.cfg = cfg

    # -- what subclasses provide
    def plan_distributions(self) -> dict[str, BaseDistribution]:
        raise NotImplementedError

    def decode_plan(self, params: Mapping[str, Any]) -> Schedule:
        """The schedule (cache plan, forecasts, trajectory meta) that the plan genes describe."""
        raise NotImplementedError

    def encode_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        raise NotImplementedError

    def nearest(self, schedule: Schedule) -> dict[str, Any] | None:
        """Genes of the closest family member (with pruning genes), or None if there is none."""
        params = self.nearest_plan(schedule)
        if params is None:  # nothing near: the genes of full compute, a neutral parent
            params = self.encode_plan(Schedule.full(self.cfg.n_calls))
        if params is None:
            return None
        ratios = schedule.prune.ratios
        params.update({f"r:{b}": min(self.cfg.ratio_steps, key=lambda r: abs(r - ratios.get(b, 0.0)))
                       for b in self.cfg.blocks})
        if self.cfg.call_scale:
            params.update({f"s{t}": 1.0 if 1.0 in self.cfg.scale_steps else self.cfg.scale_steps[0]
                           for t in range(self.cfg.n_calls)})
        return params

    def nearest_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        """Plan genes of the closest family member; by default only exact ones (`encode_plan`)."""
        return self.encode_plan(schedule)

    def initial(self) -> list[dict[str, Any]]:
        """Genes enqueued after the anchors as the first generation (none: the sampler's own start)."""
        return []

    # -- shared
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every gene and its distribution (a fixed-size genome)."""
        dists: dict[str, BaseDistribution] = dict(self.plan_distributions())
        for block in self.cfg.blocks:
            dists[f"r:{block}"] = CategoricalDistribution(self.cfg.ratio_steps)
        if self.cfg.call_scale:
            for t in range(self.cfg.n_calls):
                dists[f"s{t}"] = CategoricalDistribution(self.cfg.scale_steps)
        return dists

    def decode(self, params: Mapping[str, Any], **meta: Any) -> Schedule:
        """Build the schedule that a complete set of genes describes."""
        cfg = self.cfg
        plan = self.decode_plan(params)
        ratios = {b: float(params[f"r:{b}"]) for b in cfg.blocks if float(params[f"r:{b}"]) > 0}
        scale = [float(params[f"s{t}"]) for t in range(cfg.n_calls)] if cfg.call_scale and ratios else None
        plan.prune = PruneConfig(ratios=ratios, call_scale=scale, noise_alpha=cfg.noise_alpha,
                                 base_selection=cfg.base_selection)
        plan.meta.update(meta)
        plan.validate()
        return plan

    def encode(self, schedule: Schedule) -> dict[str, Any] | None:
        """Genes that decode to `schedule`, or None if the encoding cannot express it exactly."""
        cfg, p = self.cfg, schedule.prune
        if set(p.ratios) - set(cfg.blocks):
            return None
        if (p.noise_alpha, p.base_selection, p.sx, p.sy) != (cfg.noise_alpha, cfg.base_selection, 2, 2):
            return None
        params = self.encode_plan(schedule)
        if params is None:
            return None
        for block in cfg.blocks:
            step = nearest_step(p.ratios.get(block, 0.0), cfg.ratio_steps)
            if step is None:
                return None
            params[f"r:{block}"] = step
        if cfg.call_scale:
            steps = [nearest_step(s, cfg.scale_steps) for s in (p.call_scale or [1.0] * cfg.n_calls)]
            if None in steps or len(steps) != cfg.n_calls:
                return None
            params.update({f"s{t}": s for t, s in enumerate(steps)})
        elif p.call_scale is not None:
            return None
        return params if self.decode(params).key() == schedule.key() else None

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample (or take the enqueued) genes of `trial`."""
        return {name: suggest_gene(trial, name, dist) for name, dist in self.distributions().items()}

    def suggest(self, trial: optuna.Trial) -> Schedule:
        """Sample the genes of `trial`, decode them and report the constraints."""
        schedule = self.decode(self.sample(trial))
        self.report_constraints(trial, schedule)
        return schedule

    def report_constraints(self, trial: optuna.Trial, schedule: Schedule) -> None:
        for key, value in constraint_values(schedule, self.cfg).items():
            trial.set_constraint(key, value)


def suggest_gene(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """`trial.suggest_*` for a distribution object (categorical, int or float)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"gene {name!r}: unsupported distribution {type(dist).__name__}")


# ------------------------------------------------------------------ registry
def make_encoding(cfg: "Encoding | EncodingConfig | Mapping[str, Any]") -> Encoding:
    """The encoding object a config names (`cfg.kind`); an encoding object is returned as it is."""
    if isinstance(cfg, Encoding):
        return cfg
    from .calls import PerCallEncoding
    from .intervals import IntervalEncoding
    from .structured import StructuredEncoding

    if not isinstance(cfg, EncodingConfig):
        cfg = EncodingConfig(**cfg)
    kinds: dict[str, type[Encoding]] = {cls.name: cls for cls in (PerCallEncoding, IntervalEncoding, StructuredEncoding)}
    return kinds[cfg.kind](cfg)


def distributions(cfg: EncodingConfig) -> dict[str, BaseDistribution]:
    return make_encoding(cfg).distributions()


def decode(params: Mapping[str, Any], cfg: EncodingConfig, **meta: Any) -> Schedule:
    return make_encoding(cfg).decode(params, **meta)


def encode(schedule: Schedule, cfg: EncodingConfig) -> dict[str, Any] | None:
    return make_encoding(cfg).encode(schedule)


def suggest(trial: optuna.Trial, cfg: EncodingConfig) -> Schedule:
    return make_encoding(cfg).suggest(trial)


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
