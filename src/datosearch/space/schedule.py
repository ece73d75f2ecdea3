"""The schedule: per-U-Net-call cache plan + per-block token-pruning ratios + metadata (DESIGN §2).

In Python a cache action is `"full"`, `"reuse"`, or an `int` branch id (JSON: `{"branch": b}`).
A non-full call may also forecast what it skips (`Schedule.forecast`, call -> `Forecast`): a
shallow call predicts the cached tensor its computed part consumes, a reuse call predicts the
noise prediction, both from the last full calls (DESIGN §9). JSON `datosearch/schedule@2` carries
it inside the action (`{"branch": b, "order": k, "damping": d}`, `{"reuse": true, "order": k, ...}`);
a schedule without forecasts is written as `datosearch/schedule@1`, exactly as before.

`Schedule.trajectory` (`space.trajectory.Trajectory`) is the base trajectory the plan was made for:
scheduler class, config overrides, step count, optional explicit timesteps or sigmas. JSON
`datosearch/schedule@3` carries it in a field of its own; `@1` and `@2` files named it in
`meta.scheduler` / `meta.steps`, which load into the same trajectory (`meta` keeps provenance only).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Union

import torch

from ..errors import DatosearchError, UserValueError
from .layout import highest_resolution_blocks, n_branches, transformer_blocks
from .trajectory import Trajectory

Action = Union[str, int]
FULL, REUSE = "full", "reuse"
MAX_RATIO = 0.75
MAX_ORDER = 2
SCHEMA_V1, SCHEMA_V2, SCHEMA_V3 = "datosearch/schedule@1", "datosearch/schedule@2", "datosearch/schedule@3"
SCHEMA_IDS = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3)
LEGACY_TRAJECTORY = ("scheduler", "steps")  # where @1 / @2 schedules named their trajectory, in `meta`
BASE_SELECTIONS = ("dynamics", "similarity", "random")
FALLBACKS = ("similarity", "random")
TARGETS = ("attn1", "attn2", "ff")

# DaTo's published COCO-30k plan for calls 1..50 (LDM numbering): 0 reuse, 1 shallow branch 0, >=2 full.
DATO_COCO_CODES = [1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 12, 1, 0, 0, 0, 1, 1, 0, 1, 0, 12, 0, 0, 0, 0, 0, 0,
                   1, 0, 1, 0, 1, 12, 0, 0, 0, 0, 0, 0, 1, 0, 1, 12, 0, 1, 0, 1]
# SD1.5's highest-resolution transformer blocks, used when no U-Net is given.
SD15_TOP_BLOCKS = [f"down_blocks.0.attentions.{i}.transformer_blocks.0" for i in range(2)] + [
    f"up_blocks.3.attentions.{i}.transformer_blocks.0" for i in range(3)]


class ScheduleError(DatosearchError, ValueError):
    """A schedule that cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class Forecast:
    """Predict a skipped tensor by Newton finite differences over the last `order + 1` full calls.

    `damping` in (0, 1] scales the extrapolation step (the distance from the last full call).
    """

    order: int
    damping: float = 1.0

    def validate(self, where: str) -> None:
        if isinstance(self.order, bool) or not isinstance(self.order, int) or not 1 <= self.order <= MAX_ORDER:
            raise ScheduleError(f"field '{where}.order': {self.order!r} is not an integer in 1..{MAX_ORDER} "
                                f"(order 0 is plain reuse: leave the forecast out)")
        if not 0 < self.damping <= 1:
            raise ScheduleError(f"field '{where}.damping': {self.damping!r} is outside (0, 1]")


@dataclass
class PruneConfig:
    """Token pruning: which blocks, how much, and how base tokens are chosen."""

    ratios: dict[str, float] = field(default_factory=dict)
    call_scale: list[float] | None = None
    noise_alpha: float = 0.1
    sx: int = 2
    sy: int = 2
    base_selection: str = "dynamics"
    fallback: str = "similarity"
    targets: tuple[str, ...] = ("attn1",)
    seed: int = 0

    def ratio(self, block: str, call: int) -> float:
        """Effective ratio of `block` at U-Net call `call`."""
        r = self.ratios.get(block, 0.0)
        if self.call_scale is not None and r > 0:
            r = min(MAX_RATIO, r * self.call_scale[call])
        return r

    @property
    def active(self) -> bool:
        return any(r > 0 for r in self.ratios.values())

    def validate(self, n_calls: int | None = None) -> None:
        """Check every field (the same rules as the JSON Schema, for JSON and Python alike)."""
        _check_prune(self, n_calls)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _check_prune(p: PruneConfig, n_calls: int | None) -> None:
    def bad(name: str, message: str) -> ScheduleError:
        return ScheduleError(f"field 'prune.{name}': {message}")

    for name, choices in (("base_selection", BASE_SELECTIONS), ("fallback", FALLBACKS)):
        if getattr(p, name) not in choices:
            raise bad(name, f"{getattr(p, name)!r} is not one of {', '.join(map(repr, choices))}")
    targets = list(p.targets) if isinstance(p.targets, (list, tuple)) else None
    if not targets or any(t not in TARGETS for t in targets) or len(set(targets)) != len(targets):
        raise bad("targets", f"{p.targets!r} is not a non-empty list of distinct names from {', '.join(TARGETS)}")
    for name in ("sx", "sy"):
        if not (_is_int(getattr(p, name)) and 1 <= getattr(p, name) <= 64):
            raise bad(name, f"{getattr(p, name)!r} is not an integer in 1..64")
    if not (_is_number(p.noise_alpha) and 0 <= p.noise_alpha <= 100):
        raise bad("noise_alpha", f"{p.noise_alpha!r} is not a number in [0, 100]")
    if not (_is_int(p.seed) and 0 <= p.seed <= 2**63 - 1):
        raise bad("seed", f"{p.seed!r} is not an integer in 0..2**63-1")
    if p.call_scale is not None:
        if not isinstance(p.call_scale, (list, tuple)) or not all(_is_number(c) and c >= 0 for c in p.call_scale):
            raise bad("call_scale", f"{p.call_scale!r} is not null or a list of numbers >= 0")
        if n_calls is not None and len(p.call_scale) != n_calls:
            raise bad("call_scale", f"has {len(p.call_scale)} entries but 'cache' has {n_calls} calls")
    if not isinstance(p.ratios, dict):
        raise bad("ratios", f"expected a mapping of block paths to ratios, got {type(p.ratios).__name__}")
    limit = min(MAX_RATIO, 1 - 1 / (p.sx * p.sy))
    for block, r in p.ratios.items():
        if not isinstance(block, str):
            raise bad("ratios", f"block name {block!r} is not a string")
        if not (_is_number(r) and 0 <= r <= limit):
            raise bad(f"ratios.{block}", f"{r!r} is outside [0, {limit:g}]")


@dataclass
class Schedule:
    """What the accelerator does at every U-Net call of one generation."""

    cache: list[Action]
    prune: PruneConfig = field(default_factory=PruneConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    forecast: dict[int, Forecast] = field(default_factory=dict)
    trajectory: Trajectory | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prune.targets, list):
            self.prune.targets = tuple(self.prune.targets)
        self.forecast = {int(t): f for t, f in sorted(self.forecast.items())}
        if self.trajectory is None and all(self.meta.get(k) is not None for k in LEGACY_TRAJECTORY):
            self.meta = dict(self.meta)  # an @1 / @2 trajectory in meta: typed, the same meaning
            scheduler, steps = (self.meta.pop(k) for k in LEGACY_TRAJECTORY)
            self.trajectory = _trajectory(lambda: Trajectory(scheduler, steps), "meta.scheduler/steps")
        self.validate()

    # ----------------------------------------------------------------- anchors
    @classmethod
    def full(cls, n_calls: int, **meta: Any) -> "Schedule":
        """Full compute at every call (the reference)."""
        return cls([FULL] * n_calls, meta=dict(meta, name="full"))

    @classmethod
    def deepcache(cls, n_calls: int, interval: int, branch: int = 0, **meta: Any) -> "Schedule":
        """DeepCache uniform: full every `interval` calls, shallow `branch` in between."""
        if interval < 1:
            raise ScheduleError(f"DeepCache interval must be >= 1, got {interval}")
        plan: list[Action] = [FULL if t % interval == 0 else branch for t in range(n_calls)]
        return cls(plan, meta=dict(meta, name=f"deepcache-N{interval}-b{branch}"))

    @classmethod
    def constant_ratio(cls, n_calls: int, blocks: list[str], ratio: float, **meta: Any) -> "Schedule":
        """tomesd-like: full compute, the same pruning ratio on `blocks` at every call."""
        prune = PruneConfig(ratios={b: ratio for b in blocks})
        return cls([FULL] * n_calls, prune, meta=dict(meta, name=f"ratio-{ratio:g}"))

    @classmethod
    def dato_coco(cls, unet: torch.nn.Module | None = None, ratio: float = 0.4, **meta: Any) -> "Schedule":
        """DaTo's published COCO-30k plan (51 calls: PLMS/PNDM, 50 steps) with `ratio` on the top blocks."""
        plan: list[Action] = [FULL] + [REUSE if c == 0 else 0 if c == 1 else FULL for c in DATO_COCO_CODES]
        blocks = SD15_TOP_BLOCKS if unet is None else highest_resolution_blocks(unet)
        prune = PruneConfig(ratios={b: ratio for b in blocks} if ratio > 0 else {})
        return cls(plan, prune, meta=dict(meta, name=f"dato-coco-r{ratio:g}"))

    def with_forecast(self, order: int, damping: float = 1.0) -> "Schedule":
        """The same plan with every non-full call forecasting (order 0: no forecast)."""
        fc = {t: Forecast(order, damping) for t, a in enumerate(self.cache) if a != FULL} if order else {}
        return replace(self, forecast=fc)

    # -------------------------------------------------------------- properties
    @property
    def n_calls(self) -> int:
        return len(self.cache)

    def counts(self) -> dict[str, int]:
        """How many calls are full, shallow and reused."""
        full = sum(a == FULL for a in self.cache)
        reuse = sum(a == REUSE for a in self.cache)
        return {"full": full, "shallow": self.n_calls - full - reuse, "reuse": reuse, "forecast": len(self.forecast)}

    def key(self) -> str:
        """Hash of what the accelerator does (cache plan, forecasts, pruning) and the base trajectory
        when the schedule names one, ignoring metadata; equal to the key of the same schedule stored
        before trajectories were typed (`meta.scheduler`/`meta.steps`)."""
        body = self.to_dict()
        body["schema"] = SCHEMA_V2 if self.forecast else SCHEMA_V1
        meta = body.pop("meta")
        trajectory = body.pop("trajectory", None) or {k: meta[k] for k in LEGACY_TRAJECTORY if meta.get(k) is not None}
        if trajectory:
            body["trajectory"] = trajectory
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def with_meta(self, **meta: Any) -> "Schedule":
        return replace(self, meta={**self.meta, **meta})

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every field: the cache plan (call 0 full), then `PruneConfig.validate` (lengths, ranges, names)."""
        if not self.cache:
            raise ScheduleError("field 'cache': must have at least one call")
        for t, a in enumerate(self.cache):
            if not (a in (FULL, REUSE) or (isinstance(a, int) and not isinstance(a, bool) and a >= 0)):
                raise ScheduleError(f"field 'cache[{t}]': {a!r} is not 'full', 'reuse' or a branch id >= 0")
        if self.cache[0] != FULL:
            raise ScheduleError(f"field 'cache[0]': call 0 must be 'full', got {self.cache[0]!r}")
        self.prune.validate(self.n_calls)
        for t, fc in self.forecast.items():
            if not 0 <= t < self.n_calls or self.cache[t] == FULL:
                raise ScheduleError(f"field 'cache[{t}]': only a shallow or reuse call can forecast")
            fc.validate(f"cache[{t}]")

    def validate_for(self, unet: torch.nn.Module) -> None:
        """Check the block names and branch ids against a concrete U-Net."""
        known = {b.path for b in transformer_blocks(unet)}
        for block in self.prune.ratios:
            if block not in known:
                raise ScheduleError(f"field 'prune.ratios': unknown transformer block {block!r} for this "
                                    f"U-Net (it has {len(known)}, e.g. {sorted(known)[:1]})")
        limit = n_branches(unet)
        for t, a in enumerate(self.cache):
            if isinstance(a, int) and a >= limit:
                raise ScheduleError(f"field 'cache[{t}]': branch {a} does not exist in this U-Net "
                                    f"(valid branches: 0..{limit - 1})")

    # ---------------------------------------------------------------- dict I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON form: `schedule@3` with a trajectory; without one `schedule@1` when nothing forecasts
        (as before forecasting existed), else `@2`."""
        prune = asdict(self.prune)
        prune["targets"] = list(prune["targets"])
        cache = [_action_json(a, self.forecast.get(t)) for t, a in enumerate(self.cache)]
        schema = SCHEMA_V3 if self.trajectory is not None else SCHEMA_V2 if self.forecast else SCHEMA_V1
        out = {"schema": schema, "cache": cache, "prune": prune, "meta": dict(self.meta)}
        if self.trajectory is not None:
            out["trajectory"] = self.trajectory.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schedule":
        """Build from an already schema-validated dict (see `space.io.load`)."""
        cache: list[Action] = []
        forecast: dict[int, Forecast] = {}
        for t, a in enumerate(data["cache"]):
            if isinstance(a, str):
                cache.append(a)
                continue
            cache.append(REUSE if a.get("reuse") else a["branch"])
            if a.get("order", 0):
                forecast[t] = Forecast(a["order"], a.get("damping", 1.0))
        trajectory = data.get("trajectory")
        if trajectory is not None:
            trajectory = _trajectory(lambda: Trajectory.from_dict(trajectory), "trajectory")
        return cls(cache, PruneConfig(**data.get("prune", {})), dict(data.get("meta", {})), forecast, trajectory)


def _trajectory(make: Any, where: str) -> Trajectory:
    """`make()`, its error as a `ScheduleError` naming the field."""
    try:
        return make()
    except UserValueError as exc:
        raise ScheduleError(f"field '{where}': {exc}") from None


def _action_json(action: Action, forecast: Forecast | None) -> Any:
    """One cache action as JSON, with its forecast inside the action object (schema@2)."""
    if forecast is None:
        return action if isinstance(action, str) else {"branch": action}
    base: dict[str, Any] = {"reuse": True} if action == REUSE else {"branch": action}
    return {**base, "order": forecast.order, "damping": forecast.damping}
