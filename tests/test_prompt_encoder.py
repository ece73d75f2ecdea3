"""The embedded model's embedding-table text encoder: CLIP-like interface, prompt pooling, save/load."""

from __future__ import annotations

import pytest
import torch

from datosearch.models import digits as dg
from datosearch.models.embedded import PROMPT_LENGTH, TEXT_DIM, embedded_text_encoder, embedded_tokenizer
from datosearch.models.prompt_encoder import PromptEmbeddingEncoder


def _ids(prompts: list[str]) -> torch.Tensor:
    return embedded_tokenizer()(prompts, padding="max_length", max_length=PROMPT_LENGTH, truncation=True,
                                return_tensors="pt").input_ids


@pytest.fixture(scope="module")
def encoder() -> PromptEmbeddingEncoder:
    return embedded_text_encoder(seed=0).eval()


def test_interface_matches_clip_text_model(encoder):
    ids = _ids([dg.digit_prompt(3), ""])
    out = encoder(ids)
    assert out[0].shape == (2, PROMPT_LENGTH, TEXT_DIM)
    assert torch.equal(out[0], out.last_hidden_state)
    assert out.pooler_output.shape == (2, TEXT_DIM)
    hidden, pooled = encoder(ids, return_dict=False)
    assert torch.equal(hidden, out[0]) and torch.equal(pooled, out.pooler_output)


def test_digit_prompts_are_distinct_and_padding_is_ignored(encoder):
    ids = _ids([dg.digit_prompt(d) for d in range(10)] + [""])
    hidden = encoder(ids)[0]
    flat = hidden.flatten(1)
    distances = torch.cdist(flat, flat)
    assert distances[~torch.eye(11, dtype=torch.bool)].min() > 1e-3  # every prompt has its own conditioning
    eos = embedded_tokenizer().eos_token_id
    noisy = ids.clone()
    after_eos = (ids == eos).long().cumsum(1) > 1  # padding after the first end-of-text token
    noisy[after_eos] = 65  # arbitrary tokens where the padding was
    assert after_eos.any() and torch.equal(encoder(noisy)[0], hidden)
    assert encoder.prompt_mask(ids)[0].sum() == (ids[0] != eos).sum() + 1  # prompt tokens + its end-of-text


def test_too_long_prompt_is_refused(encoder):
    with pytest.raises(ValueError, match="limited to 24 tokens"):
        encoder(torch.zeros(1, PROMPT_LENGTH + 1, dtype=torch.long))


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path / "text_encoder", safe_serialization=True)
    loaded = PromptEmbeddingEncoder.from_pretrained(tmp_path / "text_encoder", local_files_only=True)
    ids = _ids([dg.digit_prompt(7)])
    assert torch.equal(loaded(ids)[0], encoder(ids)[0])
    assert loaded.config.eos_token_id == embedded_tokenizer().eos_token_id
