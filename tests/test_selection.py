"""Token-selection math: base tokens per patch, pruned tokens by similarity, recovery."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datosearch.dato import selection


def test_patch_argmax_picks_the_best_token_of_every_patch():
    score = torch.zeros(1, 4, 6)
    score[0, 1, 1] = score[0, 0, 2] = score[0, 0, 5] = score[0, 3, 0] = score[0, 2, 3] = score[0, 3, 5] = 1
    assert selection.patch_argmax(score, sx=2, sy=2).tolist() == [[7, 2, 5, 18, 15, 23]]


def test_dynamics_score_pools_to_block_grid():
    eps_prev = torch.zeros(2, 4, 8, 8)
    eps = eps_prev.clone()
    eps[:, :, :4, :4] = 1.0  # top-left quarter changed
    d = selection.dynamics_score(eps, eps_prev, 4, 4)
    assert d.shape == (2, 4, 4)
    assert torch.equal(d[0, :2, :2], torch.ones(2, 2)) and d[0, 2:].max() == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.floats(0.0, 0.75), st.integers(0, 99))
def test_select_partitions_tokens_and_prunes_only_non_base(b, h, w, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, h * w, 8, generator=g)
    base = selection.patch_argmax(torch.rand(b, h, w, generator=g), 2, 2)
    n_prune = min(int(h * w * ratio), h * w - base.shape[1])
    sel = selection.select(x, base, n_prune)
    assert sel.kept.shape == (b, h * w - n_prune) and sel.pruned.shape == (b, n_prune)
    every = torch.cat([sel.kept, sel.pruned], 1).sort(1).values
    assert torch.equal(every, torch.arange(h * w).expand(b, -1))
    assert torch.equal(sel.kept[:, : base.shape[1]].sort(1).values, base.sort(1).values)
    assert not (sel.pruned[:, :, None] == base[:, None, :]).any()
    out = selection.recover(selection.gather_tokens(x, sel), sel, h * w)
    assert torch.equal(out.gather(1, sel.kept[..., None].expand(-1, -1, 8)), selection.gather_tokens(x, sel))
    matched_base = sel.kept.gather(1, sel.match)
    assert torch.equal(out.gather(1, sel.pruned[..., None].expand(-1, -1, 8)),
                       x.gather(1, matched_base[..., None].expand(-1, -1, 8)))


def test_pruned_tokens_are_the_most_redundant():
    # tokens 0..3 are bases (one per 2x2 patch of a 4x4 grid); token 5 duplicates base 0 exactly
    x = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(1))
    x[0, 5] = x[0, 0] * 3.0
    base = torch.tensor([[0, 2, 8, 10]])
    sel = selection.select(x, base, 1)
    assert sel.pruned.tolist() == [[5]] and sel.kept[0, sel.match[0, 0]].item() == 0


def test_similarity_is_never_n_by_n(monkeypatch):
    shapes = []
    real_bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b: shapes.append((a.shape, b.shape)) or real_bmm(a, b))
    x = torch.randn(2, 64, 8)
    selection.select(x, selection.patch_argmax(torch.rand(2, 8, 8), 2, 2), 20)
    assert shapes == [(torch.Size([2, 48, 8]), torch.Size([2, 8, 16]))]
