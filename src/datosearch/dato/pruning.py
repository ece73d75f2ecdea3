"""Token pruning inside a transformer block's sub-module (self-attention `attn1` by default).

The module runs on the kept tokens only (SDPA sees a shorter sequence); every pruned token's
output is the output of its most similar base token. The residual is added by the block as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import ModelHook

from ..space.schedule import PruneConfig
from . import selection
from .state import DaToContext, token_grid


class TokenPruneHook(ModelHook):
    """Prunes the tokens entering one sub-module of one transformer block."""

    def __init__(self, ctx: DaToContext, block: str) -> None:
        super().__init__()
        self.ctx, self.block = ctx, block
        self.config: PruneConfig = ctx.schedule.prune

    def new_forward(self, module: torch.nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        forward = self.fn_ref.original_forward
        st = self.ctx.state()
        ratio = self.config.ratio(self.block, st.call)
        n_tokens = hidden_states.shape[1] if hidden_states.ndim == 3 else 0
        n_prune = int(n_tokens * ratio)
        if n_prune == 0 or kwargs.get("attention_mask") is not None:
            return forward(hidden_states, *args, **kwargs)
        h, w = token_grid(n_tokens, st.latent_hw)
        cfg = self.config
        if h // cfg.sy == 0 or w // cfg.sx == 0:
            return forward(hidden_states, *args, **kwargs)
        base = selection.patch_argmax(self._base_score(hidden_states, h, w), cfg.sx, cfg.sy)
        n_prune = min(n_prune, n_tokens - base.shape[1])
        sel = selection.select(hidden_states, base, n_prune)
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
