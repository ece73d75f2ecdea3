"""Schedule-aware variation for Optuna's NSGA-II (`NSGAIISampler(child_generation_strategy=...)`).

First, every enqueued member (anchor or seeded) on a trajectory that takes timesteps is tried on the
timestep pair of the nearest full-call count's best (`local.transferred`; again if a better pair turns up
there), front member or not: the seeded members come on the default pair, and where the steps sit is mostly
the model's (operator "transfer").
Local refinement: a child may start a burst of `BURST` children that refine one member of the Pareto
front, drawn uniformly among the members whose niche was refined least so far (not a refined member's niche:
searched before the study, `studies.refine`): its continuous genes (placement,
timesteps) proposed by Optuna's TPE on the study's trials that share its other genes (`search.local`),
after, on a trajectory that takes timesteps, the timestep pair of the best trial at the nearest full-call
count (`local.transferred`) unless the niche has tried it.
Otherwise the child is bred from parents picked by binary tournament (feasible before infeasible, then
Pareto dominance). The crossover keeps
structure: the placement block (trajectory, its config-switch genes, full-call count, warp, center, last)
comes whole from one parent; where the steps sit (the timestep genes: a property of the model more than
of one trajectory), each phase's (action, order, damping) and each pruning ratio from either. Mutations insert or delete full calls, shift them (warp, center,
ending on the last call or not), change a phase's action or forecast, step a pruning ratio, switch
the trajectory, move where its steps sit (a small step on the timestep genes' start and bend), or flip
one of its solver's config switches.
A child that repeats an evaluated schedule is mutated again (a few times at most), so the budget is
not spent on duplicates.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..space.structured import POWER_RANGE
from ..space.trajectory import WARP_POWER, WARP_START, switch_choices
from . import local
from .attrs import KEY_ATTR, OPERATOR_ATTR, PLAN_ATTR
from .local import PLACEMENT_GENES, TIMESTEP_GENES
from .pareto import dominates, pareto_trials

if TYPE_CHECKING:
    from ..space.structured import StructuredEncoding

CROSSOVER_PROB = 0.9
LOCAL_PROB = 0.75  # chance that a child starts a burst of local refinements (`search.local`) of one front member
# (0.5 before: in 3 default studies bred children dominated none of their parents, local ones 28 of 97)
BURST = 4  # local children per front member in a row: TPE sees the earlier ones' scores
RETRIES = 8
PLACEMENT = ("traj", "full", "warp", "center", "last")  # from one parent; the timestep genes from either


class StructuredVariation:
    """Optuna NSGA-II child generation for `StructuredEncoding` genomes."""

    def __init__(self, encoding: "StructuredEncoding", seed: int | None = None) -> None:
        self.encoding = encoding
        self.rng = np.random.RandomState(seed)
        self.children = 0  # children made so far in this process
        self._focus: tuple[int, int] | None = None  # the front member being refined and its local children to come
        self.made: dict[str, Any] = {}  # the last child's operators ("crossover+full+warp") and parents' numbers
        self.idle = False  # the runner's trial is enqueued (its genes fixed): breed nothing, change nothing

    def __call__(self, study: optuna.Study, search_space: dict[str, Any],
                 parent_population: list[FrozenTrial]) -> dict[str, Any]:
        if self.idle:  # NSGA-II asks for every trial past its first generation, enqueued ones included
            return {}
        trials = study.get_trials(deepcopy=False)
        seen = {t.user_attrs.get(KEY_ATTR) for t in trials}
        swept = None if self._focus else self._sweep(trials, seen)
        if swept is not None:
            member, child = swept
            self.children += 1
            self.made = {"operator": "transfer", "parents": [member.number]}
            return {k: v for k, v in child.items() if k in search_space}
        if self._focus or self.rng.rand() < LOCAL_PROB:
            parent = self._local_parent(trials, study.directions)
            child = self._local(parent, trials, seen) if parent is not None else None
            if child is not None:
                self.children += 1
                self.made = {"operator": "local", "parents": [parent.number]}
                return {k: v for k, v in child.items() if k in search_space}
            self._focus = None
        a = self._tournament(parent_population, study.directions)
        b = self._tournament(parent_population, study.directions)
        crossed = self.rng.rand() < CROSSOVER_PROB
        child = self.crossover(a.params, b.params) if crossed else dict(a.params)
        ops: set[str] = set()
        for _ in range(RETRIES):
            child, did = self._mutate(child)
            ops |= did
            if self.encoding.decode(child).key() not in seen:
                break
        self.children += 1
        self.made = {"operator": "+".join((["crossover"] if crossed else []) + sorted(ops)),
                     "parents": sorted({a.number, b.number}) if crossed else [a.number]}
        return {k: v for k, v in child.items() if k in search_space}

    def _tournament(self, population: list[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial:
        i, j = self.rng.choice(len(population), 2, replace=len(population) < 2)
        a, b = population[i], population[j]
        return b if dominates(b, a, directions) else a

    # ---------------------------------------------------------------- operators
    def _local_parent(self, trials: list[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial | None:
        """The front member to refine: the focus of the current burst, else one drawn uniformly among the
        least-refined members of the Pareto front of the trials whose genes are their plan (what genes can
        express), refined for the next `BURST` local children. A member is as refined as its niche (the
        genes a local child keeps): a local child that reaches the front does not make its niche new again,
        so the bursts spread over the front's niches before any niche gets a second one. The niches of
        refined members (`studies.refine`: searched before the study) are left out; none left: None."""
        if self._focus:
            number, left = self._focus
            self._focus = (number, left - 1) if left > 1 else None
            return next(t for t in trials if t.number == number)
        front = pareto_trials([t for t in trials if PLAN_ATTR not in t.user_attrs], directions)
        searched = {self._niche(t.params) for t in trials if t.user_attrs.get(OPERATOR_ATTR) == "refined"}
        front = [t for t in front if self._niche(t.params) not in searched]
        if not front:
            return None
        refined = Counter(self._niche(t.params) for t in trials if t.user_attrs.get(OPERATOR_ATTR) == "local")
        count = {t.number: refined[self._niche(t.params)] for t in front}
        front = [t for t in front if count[t.number] == min(count.values())]
        parent = front[self.rng.randint(len(front))]
        self._focus = (parent.number, BURST - 1) if BURST > 1 else None
        return parent

    def _sweep(self, trials: list[FrozenTrial], seen: set[Any]) -> tuple[FrozenTrial, dict[str, Any]] | None:
        """The first enqueued member (anchor or seeded; a refined one's pair is searched) on a trajectory that
        takes timesteps whose genes on the timestep pair of the nearest count's best (`local.transferred`)
        are not evaluated yet, and those genes: each such member is tried on the model's best pair so far,
        front member or not (None: none left)."""
        warped = [t for t in trials if self.encoding.warped(t.params)]
        for member in warped:
            if member.state != TrialState.COMPLETE or PLAN_ATTR in member.user_attrs or \
                    member.user_attrs.get(OPERATOR_ATTR) not in ("anchor", "seeded"):
                continue
            pair = local.transferred(member, warped)
            if pair is not None and self.encoding.decode(child := {**member.params, **pair}).key() not in seen:
                return member, child
        return None

    def _local(self, parent: FrozenTrial, trials: list[FrozenTrial], seen: set[Any]) -> dict[str, Any] | None:
        """`search.local`'s refinement of `parent`'s continuous genes: the first proposal not yet evaluated
        (None: every proposal repeats one)."""
        warped = self.encoding.warped(parent.params)
        seed = int(self.rng.randint(2**31))
        pair = local.transferred(parent, [t for t in trials if self.encoding.warped(t.params)]) if warped else None
        if pair is not None and self.encoding.decode({**parent.params, **pair}).key() not in seen:
            return {**parent.params, **pair}  # first the timestep pair of the nearest count's best, untried here
        free = self._free(parent.params)
        proposals = local.propose(parent, trials, self.encoding.plan_distributions(), free, seed=seed, asks=RETRIES)
        return next((p for p in proposals if self.encoding.decode(p).key() not in seen), None)

    def _free(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The continuous genes a local child of `params` takes anew (`search.local`)."""
        return PLACEMENT_GENES + (TIMESTEP_GENES if self.encoding.warped(params) else ())

    def _niche(self, params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The genes a local child of `params` keeps, as a key: trials that share it are one sub-study."""
        return tuple(sorted(local.niche(params, self._free(params)).items()))

    def crossover(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        """Placement block from one parent; where the steps sit (the timestep genes), each phase and each
        ratio gene-group-wise from either."""
        first = a if self.rng.rand() < 0.5 else b
        child = {k: first[k] for k in (*PLACEMENT, *self.encoding.switch_genes()) if k in first}
        steps_from = a if self.rng.rand() < 0.5 else b  # the model's warp travels between trajectories
        child.update({k: steps_from[k] for k in TIMESTEP_GENES if k in steps_from})
        for p in range(self.encoding.cfg.phases):
            src = a if self.rng.rand() < 0.5 else b
            child.update({f"{g}{p}": src[f"{g}{p}"] for g in ("act", "ord", "damp")})
        for block in self.encoding.cfg.blocks:
            key = f"r:{block}"
            child[key] = (a if self.rng.rand() < 0.5 else b)[key]
        return child

    def mutate(self, params: dict[str, Any]) -> dict[str, Any]:
        """At least one structural change: full calls, placement (warp, center, last call), a phase, a
        ratio or the trajectory."""
        return self._mutate(params)[0]

    def _mutate(self, params: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
        """`mutate`'s child and the operators that made it."""
        cfg, enc, rng = self.encoding.cfg, self.encoding, self.rng
        child = dict(params)
        ops = ["full", "warp", "center", "phase"] + (["ratio"] if cfg.blocks else []) + \
            [op for op in ("traj", "last", "tstart") if op in child] + (["switch"] if self._switches(child) else [])
        chosen = {ops[rng.randint(len(ops))] for _ in range(1 + rng.poisson(0.7))}
        for op in sorted(chosen):  # sorted: the same seed breeds the same children in every process
            if op == "full":  # insert or delete full calls (a step that grows with their number)
                size = max(1, round(0.15 * child["full"]))
                delta = int(rng.choice([-1, 1])) * int(rng.randint(1, size + 1))
                child["full"] = int(min(enc.max_calls, max(max(1, cfg.min_full), child["full"] + delta)))
            elif op == "warp":  # shift the full calls earlier / later
                child["warp"] = float(min(POWER_RANGE[1], max(POWER_RANGE[0], child["warp"] * math.exp(rng.normal(0, 0.3)))))
            elif op == "center":
                child["center"] = float(min(1.0, max(0.0, child["center"] + rng.normal(0, 0.15))))
            elif op == "phase":
                self._mutate_phase(child, int(rng.randint(cfg.phases)))
            elif op == "last":  # the full calls end on the last call, or not
                child["last"] = not child["last"]
            elif op == "tstart":  # move where the base trajectory's steps sit: its start, its bend
                child["tstart"] = float(min(WARP_START[1], max(WARP_START[0], child["tstart"] + rng.normal(0, 0.03))))
                child["tpow"] = float(min(WARP_POWER[1], max(WARP_POWER[0], child["tpow"] * math.exp(rng.normal(0, 0.15)))))
            elif op == "switch":  # another value of one of the trajectory's config switches
                genes = sorted(self._switches(child))
                gene = genes[rng.randint(len(genes))]
                choices = [c for c in switch_choices(self.encoding.switch_genes()[gene][2]) if c != child[gene]]
                child[gene] = choices[rng.randint(len(choices))]
            elif op == "ratio":
                key = f"r:{cfg.blocks[rng.randint(len(cfg.blocks))]}"
                child[key] = _step(cfg.ratio_steps, child[key], int(rng.choice([-1, 1])))
            else:
                child["traj"] = self._neighbour_trajectory(child["traj"])
        return child, chosen

    def _switches(self, child: dict[str, Any]) -> list[str]:
        """The switch genes of `child`'s trajectory's solver (the genes other solvers ignore left out)."""
        _, traj = self.encoding.trajectory_of(child)
        return [g for g, (solver, _, _) in self.encoding.switch_genes().items() if solver == traj["scheduler"] and g in child]

    def _neighbour_trajectory(self, name: str) -> str:
        """Another base trajectory near `name`: the same solver one step-count notch up or down, or
        another solver at the nearest step count."""
        trajs, rng = self.encoding.trajectories, self.rng
        names = [f"{t['scheduler']}:{t['steps']}" for t in trajs]
        here = trajs[names.index(name)] if name in names else trajs[0]
        same = sorted((t["steps"], n) for t, n in zip(trajs, names) if t["scheduler"] == here["scheduler"])
        steps = [st for st, _ in same]
        i = steps.index(here["steps"]) if here["steps"] in steps else 0
        options = [same[j][1] for j in (i - 1, i + 1) if 0 <= j < len(same)]
        for solver in sorted({t["scheduler"] for t in trajs} - {here["scheduler"]}):
            other = [(abs(t["steps"] - here["steps"]), n) for t, n in zip(trajs, names) if t["scheduler"] == solver]
            options.append(min(other)[1])
        return options[rng.randint(len(options))] if options else name

    def _mutate_phase(self, child: dict[str, Any], p: int) -> None:
        cfg, rng = self.encoding.cfg, self.rng
        which = rng.randint(3)
        if which == 0:
            child[f"act{p}"] = cfg.actions[rng.randint(len(cfg.actions))]
        elif which == 1:
            child[f"ord{p}"] = _step(cfg.orders, child[f"ord{p}"], int(rng.choice([-1, 1])))
        else:
            child[f"damp{p}"] = _step(cfg.damping_steps, child[f"damp{p}"], int(rng.choice([-1, 1])))


def _step(choices: Sequence[Any], value: Any, delta: int) -> Any:
    """The neighbouring choice (clamped at the ends)."""
    i = list(choices).index(value) if value in choices else 0
    return choices[min(len(choices) - 1, max(0, i + delta))]
