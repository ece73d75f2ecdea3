"""The embedded model's text encoder: an embedding table behind the CLIP text model's interface.

`PromptEmbeddingEncoder(input_ids)[0]` is a (B, L, D) tensor like `CLIPTextModel`'s last hidden state.
Every position carries the masked mean of the prompt's token embeddings (up to and including the first
end-of-text token) plus a position embedding, so the U-Net's cross-attention receives the prompt from
any key it attends to; the digit's token alone tells the prompts "a handwritten digit 0..9" apart.
"""

from __future__ import annotations

from typing import Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling


class PromptEmbeddingEncoder(ModelMixin, ConfigMixin):
    """Token-embedding table + position table + LayerNorm; no attention layers."""

    @register_to_config
    def __init__(self, vocab_size: int, hidden_size: int, max_position_embeddings: int, eos_token_id: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(max_position_embeddings, hidden_size)
        self.final_layer_norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.token_embedding.weight, std=1.0)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def prompt_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) float mask: 1 up to and including the first end-of-text token, 0 on the padding after it."""
        is_eos = (input_ids == self.config.eos_token_id).long()
        return ((is_eos.cumsum(dim=1) - is_eos) == 0).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                return_dict: bool = True):
        """`attention_mask` is accepted for interface parity; the end-of-text token defines the prompt."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"prompts are limited to {self.config.max_position_embeddings} tokens, "
                             f"got {input_ids.shape[1]}")
        tokens = self.token_embedding(input_ids)
        mask = self.prompt_mask(input_ids).unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        positions = self.position_embedding(torch.arange(input_ids.shape[1], device=input_ids.device))
        hidden = self.final_layer_norm(pooled.unsqueeze(1) + positions.unsqueeze(0))
        pooled_out = hidden[:, 0]
        if not return_dict:
            return hidden, pooled_out
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled_out)
