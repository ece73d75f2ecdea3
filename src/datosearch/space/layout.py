"""What a schedule can name in a given U-Net: transformer blocks, their resolution level, cache branches.

Branch ids follow DeepCache's `cache_branch_id`: branch `b` is down block `b // stride`, layer
`b % stride`, with `stride = layers_per_block + 1` (3 for every Stable Diffusion U-Net).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

TRANSFORMER_BLOCK_CLASS = "BasicTransformerBlock"


class BlockInfo(NamedTuple):
    """A transformer block: its module path and its resolution level (0 = highest resolution)."""

    path: str
    level: int


def _level_of(path: str, n_levels: int) -> int:
    parts = path.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return n_levels - 1 - int(parts[1])
    return n_levels - 1  # mid block


def transformer_blocks(unet: torch.nn.Module) -> list[BlockInfo]:
    """All `BasicTransformerBlock`s of a diffusers U-Net, in module order."""
    n_levels = len(unet.down_blocks)
    return [
        BlockInfo(name, _level_of(name, n_levels))
        for name, module in unet.named_modules()
        if type(module).__name__ == TRANSFORMER_BLOCK_CLASS
    ]


def highest_resolution_blocks(unet: torch.nn.Module) -> list[str]:
    """Paths of the transformer blocks at the highest-resolution level that has attention."""
    blocks = [b for b in transformer_blocks(unet) if not b.path.startswith("mid_block")]
    if not blocks:
        return []
    top = min(b.level for b in blocks)
    return [b.path for b in blocks if b.level == top]


def branch_stride(unet: torch.nn.Module) -> int:
    """Layers per down block plus its downsampler: 3 for Stable Diffusion U-Nets."""
    return len(unet.down_blocks[0].resnets) + 1


def n_branches(unet: torch.nn.Module) -> int:
    """Number of valid cache branch ids (`0 .. n_branches-1`)."""
    return len(unet.down_blocks) * branch_stride(unet)
