"""Optuna samplers by name: NSGA-II (default), NSGA-III, TPE, GP, random."""

from __future__ import annotations

import optuna

from ..errors import UserValueError

SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random")


def make_sampler(name: str, population: int = 8, seed: int | None = 0) -> optuna.samplers.BaseSampler:
    """Build a sampler; constraints reach the samplers through `Trial.set_constraint` (Optuna ≥ 5)."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=population, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
