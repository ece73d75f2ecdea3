"""The per-call encoding: one categorical gene ``c{t}`` per U-Net call (call 0 is always full)."""

from __future__ import annotations

from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution

from .encoding import Encoding, action_of, gene_of
from .schedule import FULL, Action, Schedule


class PerCallEncoding(Encoding):
    """Choices per call: ``"full"``, ``"reuse"`` and ``"b{branch}"`` (a DeepCache shallow call)."""

    name = "calls"

    def plan_distributions(self) -> dict[str, BaseDistribution]:
        return {f"c{t}": CategoricalDistribution([FULL] + self.cfg.actions) for t in range(1, self.cfg.n_calls)}

    def decode_plan(self, params: Mapping[str, Any]) -> Schedule:
        plan: list[Action] = [FULL] + [action_of(params[f"c{t}"]) for t in range(1, self.cfg.n_calls)]
        return Schedule(plan)

    def encode_plan(self, schedule: Schedule) -> dict[str, Any] | None:
        if schedule.n_calls != self.cfg.n_calls or schedule.forecast or schedule.meta.get("steps"):
            return None
        params = {f"c{t}": gene_of(schedule.cache[t]) for t in range(1, self.cfg.n_calls)}
        return params if all(g in [FULL] + self.cfg.actions for g in params.values()) else None
