"""Anchor schedules enqueued before the search so that every front is compared against them."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..space.layout import highest_resolution_blocks
from ..space.placement import deepcache_nonuniform
from ..space.schedule import DATO_COCO_CODES, FULL, REUSE, Action, PruneConfig, Schedule
from ..space.trajectory import SHORT_NAMES, Trajectory

DEEPCACHE_INTERVALS = tuple(range(2, 11))  # uniform N=2..10, the ladder users compare against
NONUNIFORM_INTERVALS = (5, 8)  # DeepCache's non-uniform placement (center 15, power 1.4), as users know it
NONUNIFORM_CENTER = 15
CONSTANT_RATIOS = (0.3, 0.5)
DATO_RATIO = 0.4


def dato_coco_for(unet: torch.nn.Module, n_calls: int, ratio: float = DATO_RATIO) -> Schedule:
    """DaTo's COCO plan; for a call count other than 51 it is resampled proportionally (call 0 stays full)."""
    if n_calls == len(DATO_COCO_CODES) + 1:
        return Schedule.dato_coco(unet, ratio)
    codes = [DATO_COCO_CODES[min(len(DATO_COCO_CODES) - 1, round((t - 1) * len(DATO_COCO_CODES) / max(1, n_calls - 1)))]
             for t in range(1, n_calls)]
    plan: list[Action] = [FULL] + [REUSE if c == 0 else 0 if c == 1 else FULL for c in codes]
    prune = PruneConfig(ratios={b: ratio for b in highest_resolution_blocks(unet)})
    return Schedule(plan, prune, meta={"name": f"dato-coco-r{ratio:g}-resampled"})


def fewer_steps_anchor(trajectory: dict[str, Any]) -> Schedule:
    """What a user does instead of caching: full compute on a shorter trajectory (another scheduler);
    `trajectory` as `EncodingConfig.trajectories` lists them (with its U-Net `calls`)."""
    short = {v: k for k, v in SHORT_NAMES.items() if k != "dpm"}.get(trajectory["scheduler"], trajectory["scheduler"])
    return Schedule([FULL] * trajectory["calls"], meta={"name": f"{short}-{trajectory['steps']}"},
                    trajectory=Trajectory.from_dict(trajectory))


def anchor_schedules(unet: torch.nn.Module, n_calls: int, fewer: Sequence[dict[str, Any]] = ()) -> list[Schedule]:
    """Full compute, DeepCache uniform N=2..10 and non-uniform N=5, 8 (branch 0), DaTo COCO (ratio 0.4),
    constant ratios 0.3 and 0.5, and full compute on each of the `fewer` (shorter) trajectories."""
    top = highest_resolution_blocks(unet)
    anchors = [Schedule.full(n_calls)]
    anchors += [Schedule.deepcache(n_calls, n, 0) for n in DEEPCACHE_INTERVALS if n < n_calls]
    if n_calls > 2 * NONUNIFORM_CENTER:  # DeepCache's centre (step 15) is meant for ~50 steps
        anchors += [deepcache_nonuniform(n_calls, n_calls - 1, n, center=NONUNIFORM_CENTER) for n in NONUNIFORM_INTERVALS]
    anchors.append(dato_coco_for(unet, n_calls))
    anchors += [Schedule.constant_ratio(n_calls, top, r) for r in CONSTANT_RATIOS]
    anchors += [fewer_steps_anchor(t) for t in fewer]
    return anchors
