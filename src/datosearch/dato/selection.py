"""Which tokens to keep: base tokens per patch, pruned tokens by similarity to the bases (DESIGN §3).

Pure tensor functions with no host synchronisation; all index tensors stay on the tokens' device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Selection(NamedTuple):
    """Token indices for one pruned module call (all (B, ·) int64 tensors).

    `kept` lists base tokens first, so `match` (the most similar base of each pruned token, as a
    position in the base list) is also a position in `kept`.
    """

    kept: torch.Tensor
    pruned: torch.Tensor
    match: torch.Tensor


def normalise(score: torch.Tensor) -> torch.Tensor:
    """Min-max normalise a (B, h, w) score per sample to [0, 1]."""
    flat = score.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(score)


def dynamics_score(eps: torch.Tensor, eps_prev: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """DaTo's dynamics: channel-mean |eps_k - eps_prev|, average-pooled to the block's (h, w) grid."""
    d = (eps.float() - eps_prev.float()).abs().mean(1, keepdim=True)
    return normalise(F.adaptive_avg_pool2d(d, (h, w))[:, 0])


def similarity_score(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """SiTo's score: each token's summed cosine similarity to all tokens, in O(N·C) as x̂_i · Σ_j x̂_j."""
    xn = F.normalize(x.float(), dim=-1)
    s = (xn * xn.sum(1, keepdim=True)).sum(-1)
    return normalise(s.view(-1, h, w))


def patch_argmax(score: torch.Tensor, sx: int, sy: int) -> torch.Tensor:
    """Flat token index of the highest-scoring token in every `sy × sx` patch: (B, n_patches).

    Tokens in a partial patch at the right/bottom edge are never base tokens (as in tomesd).
    """
    b, h, w = score.shape
    hp, wp = h // sy, w // sx
    s = score[:, : hp * sy, : wp * sx].reshape(b, hp, sy, wp, sx).permute(0, 1, 3, 2, 4).reshape(b, hp, wp, sy * sx)
    best = s.argmax(-1)
    rows = torch.arange(hp, device=score.device).view(1, hp, 1) * sy + best // sx
    cols = torch.arange(wp, device=score.device).view(1, 1, wp) * sx + best % sx
    return (rows * w + cols).flatten(1)


def select(x: torch.Tensor, base: torch.Tensor, n_prune: int) -> Selection:
    """Prune the `n_prune` non-base tokens most similar (cosine) to their most similar base token.

    Similarity is computed only between non-base and base tokens ((N - n_base) × n_base), never N × N.
    """
    b, n, _ = x.shape
    n_base = base.shape[1]
    is_base = torch.zeros(b, n, dtype=torch.int8, device=x.device).scatter_(1, base, 1)
    order = torch.argsort(is_base, dim=1, stable=True)  # non-base tokens first, then base tokens
    others, base = order[:, : n - n_base], order[:, n - n_base:]
    xn = F.normalize(x, dim=-1)
    sim = torch.bmm(_take(xn, others), _take(xn, base).transpose(1, 2))
    best, match = sim.max(-1)
    rank = torch.argsort(best, dim=1, descending=True)
    pruned_pos = rank[:, :n_prune]
    kept = torch.cat([base, others.gather(1, rank[:, n_prune:])], dim=1)
    return Selection(kept, others.gather(1, pruned_pos), match.gather(1, pruned_pos))


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather tokens `index` (B, K) from x (B, N, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gather_tokens(x: torch.Tensor, sel: Selection) -> torch.Tensor:
    """The kept tokens of x, base tokens first."""
    return _take(x, sel.kept)


def recover(out_kept: torch.Tensor, sel: Selection, n_tokens: int) -> torch.Tensor:
    """Scatter kept outputs back; fill each pruned token with its most similar base token's output."""
    b, _, c = out_kept.shape
    out = out_kept.new_empty(b, n_tokens, c)
    out.scatter_(1, sel.kept.unsqueeze(-1).expand(-1, -1, c), out_kept)
    out.scatter_(1, sel.pruned.unsqueeze(-1).expand(-1, -1, c), _take(out_kept, sel.match))
    return out
