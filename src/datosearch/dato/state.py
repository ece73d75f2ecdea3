"""Per-generation state shared by all DaTo hooks, kept in a diffusers `StateManager`."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from diffusers.hooks.hooks import BaseState, CacheContext, StateManager

from ..space.schedule import FULL, Action, Forecast, Schedule
from .forecast import History

_CONTEXT = CacheContext(name="datosearch")


class DaToState(BaseState):
    """Everything one generation accumulates: call index, cached features, recent noise predictions."""

    def __init__(self) -> None:
        self.call = 0  # index of the U-Net call in progress (or the next one)
        self.action: Action = FULL
        self.forecast: Forecast | None = None  # this call's forecast, if its action has one
        self.cfg = False  # batch is [uncond, cond] halves that share base-token choices
        self.latent_hw: tuple[int, int] = (0, 0)
        self.last_output: torch.Tensor | None = None
        self.eps: list[torch.Tensor] = []  # the last two *computed* noise predictions, newest last
        self.features: dict[str, Any] = {}  # DeepCache: module path -> last output
        self.dynamics: dict[tuple[int, int], torch.Tensor] = {}  # per call: grid -> pooled dynamics
        self.history: dict[str, History] = {}  # forecast path (module path, or EPS) -> full-call values
        self.generator: torch.Generator | None = None

    def reset(self) -> None:
        self.__init__()

    def remember(self, path: str, size: int, value: torch.Tensor) -> None:
        """Keep `value` as this full call's value of forecast path `path` (the last `size` are kept)."""
        self.history.setdefault(path, History(size)).update(self.call, value)

    def predict(self, path: str, fallback: torch.Tensor) -> torch.Tensor:
        """This call's forecast of `path`; `fallback` (the plain cache) when the call does not forecast."""
        fc, history = self.forecast, self.history.get(path)
        if fc is None or history is None:
            return fallback
        return history.predict(self.call, fc.order, fc.damping)


class DaToContext:
    """The schedule plus the state manager; one per applied U-Net."""

    def __init__(self, schedule: Schedule, cfg: Callable[[], bool] = lambda: False) -> None:
        self.schedule = schedule
        self.cfg = cfg
        self.manager = StateManager(DaToState)
        self.manager.set_context(_CONTEXT)

    @property
    def n_calls(self) -> int:
        return self.schedule.n_calls

    def state(self) -> DaToState:
        return self.manager.get_state()

    def reset(self) -> None:
        """Start a new generation: drop caches and restart the call count and the noise generator."""
        self.manager.reset()
        self.manager.set_context(_CONTEXT)

    def generator(self, device: torch.device) -> torch.Generator:
        st = self.state()
        if st.generator is None or st.generator.device != device:
            st.generator = torch.Generator(device=device).manual_seed(self.schedule.prune.seed)
        return st.generator


def token_grid(n_tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a block with `n_tokens`, from the latent size and stride-2 downsampling."""
    h, w = latent_hw
    for _ in range(8):
        if h * w == n_tokens:
            return h, w
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    raise ValueError(f"cannot map {n_tokens} tokens onto a grid of latents {latent_hw}")
