"""A counted MACs cost: multiply-accumulates of the U-Net over one generation under a schedule.

Model: MACs(generation) = Σ over U-Net calls t of MACs(kind_t), where a call's kind is its cache
action ("full" / shallow branch b / "reuse") plus the pruning ratios in force at t. Reuse costs 0.
Every other kind is counted once with `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs/2)
on one U-Net forward with the accelerator applied: a 2-call schedule `["full", kind]` is run and
the second call counted (the first fills DeepCache's feature cache). The forward runs on a replica
of the U-Net built from its config on the *meta* device, so counting does no arithmetic, needs no
weights, never touches the caller's U-Net (or a schedule applied to it) and is deterministic.
Base tokens are chosen by similarity without noise for counting: the number of kept tokens, hence
the count, does not depend on which tokens are kept.

Counted: convolutions, matmuls/linears and attention (SDPA, including the CPU flash kernel that
`FlopCounterMode` does not map by itself). Not counted: elementwise ops, norms, softmax inside
the unfused path, the text encoder and the VAE (constant across schedules). Per image: the batch
is 2 with classifier-free guidance (`guidance_scale > 1`), else 1.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Hashable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..space.schedule import FULL, REUSE, Action, PruneConfig, Schedule
from .errors import ObjectiveError

_aten = torch.ops.aten
_KIND_CACHE: dict[Hashable, int] = {}


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {op: _sdpa_cpu_flops for op in (getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None),)
           if op is not None}


def _unet_and_scale(target: Any) -> tuple[torch.nn.Module, int, int]:
    """(U-Net, pixels per latent, text sequence length) of a pipeline or a bare U-Net.

    Pipelines: their `vae_scale_factor`, or 1 for pixel-space pipelines (no VAE). Bare U-Nets: 8 (SD).
    """
    unet = getattr(target, "unet", target)
    if not isinstance(unet, torch.nn.Module) or not hasattr(unet, "config"):
        raise ObjectiveError(f"count_macs needs a diffusers pipeline or U-Net, got {type(target).__name__}")
    if target is unet:
        scale = 8
    else:
        scale = int(getattr(target, "vae_scale_factor", 8 if getattr(target, "vae", None) is not None else 1))
    tokenizer = getattr(target, "tokenizer", None)
    seq_len = int(getattr(tokenizer, "model_max_length", 77)) if tokenizer is not None else 77
    return unet, scale, min(seq_len, 77)


def _inputs(unet: torch.nn.Module, batch: int, latent_hw: tuple[int, int], seq_len: int,
            device: torch.device) -> tuple[tuple[Any, ...], dict[str, Any]]:
    cfg = unet.config
    ctx_dim = cfg.encoder_hid_dim or cfg.cross_attention_dim
    ctx_dim = ctx_dim[0] if isinstance(ctx_dim, (list, tuple)) else ctx_dim
    sample = torch.zeros(batch, cfg.in_channels, *latent_hw, device=device)
    kwargs: dict[str, Any] = {"encoder_hidden_states": torch.zeros(batch, seq_len, ctx_dim, device=device),
                              "return_dict": False}
    if cfg.addition_embed_type == "text_time":  # SDXL: pooled text embeds + 6 time ids
        text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.zeros(batch, text_dim, device=device),
                                       "time_ids": torch.zeros(batch, 6, device=device)}
    if cfg.time_cond_proj_dim is not None:
        kwargs["timestep_cond"] = torch.zeros(batch, cfg.time_cond_proj_dim, device=device)
    return (sample, torch.tensor(999, device=device)), kwargs


def _meta_replica(unet: torch.nn.Module) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return type(unet).from_config(unet.config).eval()
    except Exception as exc:  # noqa: BLE001 - any failure means this U-Net class cannot be rebuilt
        raise ObjectiveError(f"count_macs cannot rebuild {type(unet).__name__} from its config on the meta "
                             f"device ({exc})") from None


def _count_kind(unet: torch.nn.Module, action: Action, ratios: dict[str, float], prune: PruneConfig,
                batch: int, latent_hw: tuple[int, int], seq_len: int) -> int:
    """MACs of one U-Net call of this kind (see the module docstring)."""
    replica = _meta_replica(unet)
    args, kwargs = _inputs(replica, batch, latent_hw, seq_len, torch.device("meta"))
    counting = replace(prune, ratios=dict(ratios), call_scale=None, base_selection="similarity", noise_alpha=0.0)
    handle = None
    if action != FULL or ratios:
        from ..dato import apply  # the accelerator, only needed for shallow and pruned calls

        handle = apply(replica, Schedule([FULL, action], counting))
    try:
        with torch.no_grad():
            if handle is not None:
                replica(*args, **kwargs)
            with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
                replica(*args, **kwargs)
    finally:
        if handle is not None:
            handle.remove()
    return counter.get_total_flops() // 2


def _default_guidance(pipe: Any) -> float:
    config = getattr(pipe, "config", None)
    value = config.get("guidance_scale") if isinstance(config, dict) and not hasattr(pipe, "down_blocks") else None
    return 7.5 if value is None else float(value)


def call_macs(pipe: Any, schedule: Schedule, height: int | None = None, width: int | None = None,
              guidance_scale: float | None = None) -> list[int]:
    """MACs of every U-Net call of one generation under `schedule` (0 for reuse calls)."""
    unet, scale, seq_len = _unet_and_scale(pipe)
    guidance_scale = _default_guidance(pipe) if guidance_scale is None else guidance_scale
    schedule.validate_for(unet)
    size = unet.config.sample_size
    size = size if isinstance(size, (list, tuple)) else (size, size)
    height, width = height or size[0] * scale, width or size[1] * scale
    latent_hw = (height // scale, width // scale)
    batch = 2 if guidance_scale > 1 else 1
    base = (json.dumps(unet.config, sort_keys=True, default=str), latent_hw, batch, seq_len)
    prune = schedule.prune
    out: list[int] = []
    for t, action in enumerate(schedule.cache):
        if action == REUSE:
            out.append(0)
            continue
        ratios = {b: r for b in sorted(prune.ratios) if (r := prune.ratio(b, t)) > 0}
        key = (*base, action, tuple(ratios.items()), prune.sx, prune.sy, tuple(prune.targets))
        if key not in _KIND_CACHE:
            _KIND_CACHE[key] = _count_kind(unet, action, ratios, prune, batch, latent_hw, seq_len)
        out.append(_KIND_CACHE[key])
    return out


def count_macs(pipe: Any, schedule: Schedule, prompt: str = "", height: int | None = None,
               width: int | None = None, guidance_scale: float | None = None) -> int:
    """Counted MACs of the U-Net over one generation (per image) under `schedule`.

    `pipe` is a diffusers pipeline (latent or pixel space) or a bare U-Net (then `height`/`width`
    are in pixels with a VAE factor of 8). Defaults: the U-Net's `sample_size` resolution, and the
    pipeline config's `guidance_scale` if it has one, else 7.5 (> 1: batch 2 for CFG).
    `prompt` does not change the count (SD pipelines pad every prompt to the tokenizer's max
    length); it is accepted for API symmetry with generation. See the module docstring.
    """
    del prompt
    return sum(call_macs(pipe, schedule, height=height, width=width, guidance_scale=guidance_scale))
