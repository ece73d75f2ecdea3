"""Optuna samplers by name: NSGA-II (default), NSGA-III, TPE, GP, random.

With an encoding that brings its own variation (the structured encoding), NSGA-II takes it as
its `child_generation_strategy`; the sampler itself stays Optuna's.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from ..errors import UserValueError

SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random")


def make_sampler(name: str, population: int = 8, seed: int | None = 0, encoding: Any = None) -> optuna.samplers.BaseSampler:
    """Build a sampler; constraints reach the samplers through `Trial.set_constraint` (Optuna ≥ 5).

    `encoding` (an `Encoding`, an `EncodingConfig` or its dict): the structured encoding's variation
    (`search.variation.StructuredVariation`) is NSGA-II's child generation; other encodings use Optuna's.
    """
    if name == "nsga2":
        strategy = None
        if encoding is not None:
            from ..space.encoding import make_encoding
            from ..space.structured import StructuredEncoding
            from .variation import StructuredVariation

            encoding = make_encoding(encoding)
            strategy = StructuredVariation(encoding, seed) if isinstance(encoding, StructuredEncoding) else None
        with warnings.catch_warnings():  # child_generation_strategy is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.NSGAIISampler(population_size=population, seed=seed,
                                                 child_generation_strategy=strategy)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=population, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def variation_of(sampler: optuna.samplers.BaseSampler) -> Any:
    """The `StructuredVariation` an NSGA-II sampler breeds its children with (None: Optuna's own, or another
    sampler): what the runner asks which operators made a trial."""
    from .variation import StructuredVariation

    strategy = getattr(sampler, "_child_generation_strategy", None)  # NSGAIISampler keeps what it was given
    return strategy if isinstance(strategy, StructuredVariation) else None
