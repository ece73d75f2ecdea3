"""Token pruning inside a transformer block's sub-module (self-attention `attn1` by default).

The module runs on the kept tokens only (SDPA sees a shorter sequence); every pruned token's
output is the output of its most similar base token. The residual is added by the block as usual.

Pruning never goes missing without a word: a grid too small for one `sx × sy` patch at the U-Net's
own sample size, or a target the block lacks, is refused at `apply` (`check_prunable`); a call
that cannot be pruned at run time (an attention mask, an input that is not (B, N, C), a grid too
small at another resolution, a ratio that rounds to 0 tokens) runs unpruned, warns once per module
and is counted in the handle's `PruneLog`, which the evaluator stores with each trial.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import ModelHook

from ..space.layout import transformer_blocks
from ..space.schedule import PruneConfig, Schedule, ScheduleError
from . import selection
from .state import DaToContext, token_grid


class PruningSkippedWarning(UserWarning):
    """A module that the schedule prunes ran unpruned for a call (the message says why)."""


@dataclass
class PruneLog:
    """What pruning actually did since `apply`, over all generations: module calls pruned, tokens
    entering and removed from those calls, and calls that ran unpruned, by module and reason."""

    pruned_calls: int = 0
    tokens_in: int = 0
    tokens_removed: int = 0
    skipped: Counter = field(default_factory=Counter)  # "block.target: reason" -> calls

    def pruned(self, n_tokens: int, n_removed: int) -> None:
        self.pruned_calls += 1
        self.tokens_in += n_tokens
        self.tokens_removed += n_removed

    def skip(self, module: str, reason: str) -> None:
        key = f"{module}: {reason}"
        if key not in self.skipped:
            warnings.warn(f"datosearch: {module} is not pruned ({reason}); the schedule's ratio is not applied "
                          f"there (warned once per module)", PruningSkippedWarning, stacklevel=2)
        self.skipped[key] += 1

    def add(self, other: "PruneLog") -> None:
        """Count what `other` logged (another process's part of the same generations) here too."""
        self.pruned_calls += other.pruned_calls
        self.tokens_in += other.tokens_in
        self.tokens_removed += other.tokens_removed
        self.skipped.update(other.skipped)

    def attrs(self) -> dict[str, Any]:
        """Trial attributes: `pruned_calls`, `pruned_token_fraction`, `pruning_skipped_calls` (+ reasons)."""
        out: dict[str, Any] = {"pruned_calls": self.pruned_calls,
                               "pruned_token_fraction": self.tokens_removed / self.tokens_in if self.tokens_in else 0.0,
                               "pruning_skipped_calls": sum(self.skipped.values())}
        if self.skipped:
            out["pruning_skipped"] = dict(self.skipped)
        return out


def _native_latent_hw(unet: torch.nn.Module) -> tuple[int, int] | None:
    size = getattr(getattr(unet, "config", None), "sample_size", None)
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return None


def check_prunable(unet: torch.nn.Module, schedule: Schedule) -> None:
    """Refuse (`ScheduleError`) pruning that could never happen on this U-Net at its own sample size."""
    cfg = schedule.prune
    levels = {b.path: b.level for b in transformer_blocks(unet)}
    native = _native_latent_hw(unet)
    for block, ratio in cfg.ratios.items():
        if ratio <= 0:
            continue
        for target in cfg.targets:
            if not isinstance(getattr(unet.get_submodule(block), target, None), torch.nn.Module):
                raise ScheduleError(f"field 'prune.targets': transformer block {block!r} has no {target!r} to prune")
        if native is not None and block in levels:
            h, w = (math.ceil(s / 2 ** levels[block]) for s in native)
            if h // cfg.sy == 0 or w // cfg.sx == 0:
                raise ScheduleError(f"field 'prune.ratios': block {block!r} has a {h}x{w} token grid at this U-Net's "
                                    f"sample size, smaller than one {cfg.sx}x{cfg.sy} patch, so it can never be "
                                    f"pruned; drop it or use smaller prune.sx/prune.sy")


class TokenPruneHook(ModelHook):
    """Prunes the tokens entering one sub-module (`target`) of one transformer block."""

    def __init__(self, ctx: DaToContext, block: str, target: str = "attn1", log: PruneLog | None = None) -> None:
        super().__init__()
        self.ctx, self.block, self.module_name = ctx, block, f"{block}.{target}"
        self.config: PruneConfig = ctx.schedule.prune
        self.log = log if log is not None else PruneLog()

    def _skip_reason(self, hidden_states: torch.Tensor, kwargs: dict[str, Any], ratio: float,
                     latent_hw: tuple[int, int]) -> str | None:
        if kwargs.get("attention_mask") is not None:
            return "an attention mask was passed"
        if hidden_states.ndim != 3:
            return f"its input is {hidden_states.ndim}-D, not (batch, tokens, channels)"
        n_tokens = hidden_states.shape[1]
        if int(n_tokens * ratio) == 0:
            return f"ratio {ratio:g} of {n_tokens} tokens rounds to 0"
        h, w = token_grid(n_tokens, latent_hw)
        if h // self.config.sy == 0 or w // self.config.sx == 0:
            return f"its {h}x{w} token grid is smaller than one {self.config.sx}x{self.config.sy} patch"
        return None

    def new_forward(self, module: torch.nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        forward = self.fn_ref.original_forward
        st = self.ctx.state()
        ratio = self.ctx.plan().prune.ratio(self.block, st.call)
        if ratio <= 0:  # planned: this call is not pruned (a per-call multiplier of 0)
            return forward(hidden_states, *args, **kwargs)
        reason = self._skip_reason(hidden_states, kwargs, ratio, st.latent_hw)
        if reason is not None:
            self.log.skip(self.module_name, reason)
            return forward(hidden_states, *args, **kwargs)
        n_tokens = hidden_states.shape[1]
        h, w = token_grid(n_tokens, st.latent_hw)
        base = selection.patch_argmax(self._base_score(hidden_states, h, w), self.config.sx, self.config.sy)
        n_prune = min(int(n_tokens * ratio), n_tokens - base.shape[1])
        sel = selection.select(hidden_states, base, n_prune)
        self.log.pruned(n_tokens, n_prune)
        out = forward(selection.gather_tokens(hidden_states, sel), *args, **kwargs)
        return selection.recover(out, sel, n_tokens)

    def _base_score(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Per-token score (B, h, w) whose per-patch argmax is the base token; CFG halves share it."""
        st, cfg = self.ctx.state(), self.config
        method = cfg.base_selection
        if method == "dynamics" and len(st.eps) < 2:
            method = cfg.fallback
        if method == "dynamics":
            score = st.dynamics.get((h, w))
            if score is None:
                score = st.dynamics[(h, w)] = selection.dynamics_score(st.eps[-1], st.eps[-2], h, w)
        elif method == "similarity":
            score = selection.similarity_score(x, h, w)
        else:
            score = torch.zeros(x.shape[0], h, w, device=x.device)
        shared = st.cfg and score.shape[0] % 2 == 0
        if shared:
            score = 0.5 * (score[: score.shape[0] // 2] + score[score.shape[0] // 2:])
        alpha = 1.0 if method == "random" else cfg.noise_alpha
        if alpha > 0:
            noise = torch.randn(score.shape, generator=self.ctx.generator(x.device), device=x.device)
            score = score + alpha * noise
        return torch.cat([score, score]) if shared else score
