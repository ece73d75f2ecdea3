"""The intervals encoding: segment genes ``seg{k}`` (length 1..max_interval) and ``act{k}``.

Each segment starts with a full call and its other calls do ``act{k}``; segments are laid out
until every call is covered and the rest are ignored (so the genome has a fixed size).
"""

from __future__ import annotations

from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution

from .encoding import Encoding, action_of, gene_of
from .schedule import FULL, Action, Schedule


class IntervalEncoding(Encoding):
    """Segments of a full call followed by one repeated non-full action."""

    name = "intervals"

    def plan_distributions(self) -> dict[str, BaseDistribution]:
        dists: dict[str, BaseDistribution] = {}
        for k in range(self.cfg.n_calls):
            dists[f"seg{k}"] = CategoricalDistribution(list(range(1, self.cfg.max_interval + 1)))
            dists[f"act{k}"] = CategoricalDistribution(self.cfg.actions)
        return dists

    def decode_plan(self, params: Mapping[str, Any]) -> Schedule:
        plan: list[Action] = []
        k = 0
        while len(plan) < self.cfg.n_calls:
            plan += [FULL] + [action_of(params[f"act{k}"])] * (int(params[f"seg{k}"]) - 1)
            k += 1
        return Schedule(plan[: self.cfg.n_calls])

    def encode_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        cfg, plan = self.cfg, schedule.cache
        if schedule.n_calls != cfg.n_calls or schedule.forecast or schedule.meta.get("steps"):
            return None
        starts = [t for t, a in enumerate(plan) if a == FULL]
        params: dict[str, Any] = {}
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(plan)
            rest = set(plan[start + 1:end])
            if end - start > cfg.max_interval or len(rest) > 1:
                return None
            gene = gene_of(rest.pop()) if rest else cfg.actions[0]
            if gene not in cfg.actions:
                return None
            params[f"seg{k}"], params[f"act{k}"] = end - start, gene
        for k in range(len(starts), cfg.n_calls):  # unused tail segments: a fixed filler
            params[f"seg{k}"], params[f"act{k}"] = 1, cfg.actions[0]
        return params
