"""The embedded model's attention processor: diffusers' SDPA results, padded heads, one pass for CFG twins."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

import datosearch
from datosearch.models.attention import PAD_TO, EmbeddedAttnProcessor
from datosearch.models.embedded import build_embedded_pipeline, embedded_text_encoder, embedded_unet
from datosearch.space import PruneConfig, Schedule

TOP = "down_blocks.0.attentions.0.transformer_blocks.0"


@pytest.fixture()
def sdpa_shapes(monkeypatch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(query shape, key shape) of every SDPA call."""
    calls, real = [], F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append((tuple(q.shape), tuple(k.shape)))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return calls


def _unet_output(unet, processor, cfg_twins: bool, seed: int = 0) -> torch.Tensor:
    """One U-Net call on 4 samples; with `cfg_twins` the batch is [x, x] with different conditioning."""
    unet.set_attn_processor(processor)
    gen = torch.Generator().manual_seed(seed)
    x, cond = torch.randn(4, 1, 32, 32, generator=gen), torch.randn(4, 24, 32, generator=gen)
    if cfg_twins:
        x = x[:2].repeat(2, 1, 1, 1)
    with torch.no_grad():
        return unet(x, torch.tensor(500), encoder_hidden_states=cond).sample


@pytest.mark.parametrize("cfg_twins", [False, True])
def test_same_outputs_as_sdpa_processor(cfg_twins):
    unet = embedded_unet(seed=1).eval()
    stock = _unet_output(unet, AttnProcessor2_0(), cfg_twins)
    ours = _unet_output(unet, EmbeddedAttnProcessor(), cfg_twins)
    assert torch.allclose(ours, stock, atol=1e-5, rtol=1e-4)
    assert stock.abs().max() > 0.1
    assert not torch.allclose(stock[:2], stock[2:])  # the halves' conditioning really differs


def test_narrow_heads_padded_and_cfg_twins_attended_once(sdpa_shapes):
    _unet_output(embedded_unet().eval(), EmbeddedAttnProcessor(), cfg_twins=True)
    assert sorted({q[-1] for q, _ in sdpa_shapes}) == [PAD_TO]  # 8-wide heads padded, 16-wide ones as they are
    top_self = [q for q, k in sdpa_shapes if q[-2] == k[-2] == 1024]
    assert top_self == [(2, 1, 1024, PAD_TO)]  # the one top-level self-attention, for one CFG half
    assert all(q[0] == 4 for q, k in sdpa_shapes if q[-2] < 1024 or k[-2] < 1024)  # the rest on both halves


def test_masked_attention_falls_back_to_sdpa_processor(sdpa_shapes):
    attn = Attention(query_dim=8, heads=1, dim_head=8, processor=EmbeddedAttnProcessor()).eval()
    x, mask = torch.randn(2, 6, 8), torch.zeros(2, 6)
    mask[:, -2:] = -1e4
    expected = AttnProcessor2_0()(attn, x, attention_mask=mask)
    assert torch.equal(attn(x, attention_mask=mask), expected)
    assert {q[-1] for q, _ in sdpa_shapes} == {8}


def test_pruning_and_remove_with_embedded_processor(sdpa_shapes):
    pipe = build_embedded_pipeline(embedded_unet(seed=2), embedded_text_encoder(seed=2))

    def run() -> torch.Tensor:
        return pipe(["a handwritten digit 4"], num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                    output_type="pt").images

    before = run()
    handle = datosearch.apply(pipe, Schedule(["full"] * 4, PruneConfig(ratios={TOP: 0.5})))
    sdpa_shapes.clear()
    pruned = run()
    handle.remove()
    assert {q for q, k in sdpa_shapes if q == k and q[-2] > 256} == {(1, 1, 1024 - 512, PAD_TO)}
    assert not torch.equal(pruned, before) and torch.equal(run(), before)
