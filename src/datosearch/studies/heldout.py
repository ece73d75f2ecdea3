"""The fair held-out evaluation: schedules scored on prompts and seeds no study uses.

Studies calibrate on seeds 0..N-1; here the images of `studies.protocol.HeldoutProtocol` (the ten digit
prompts cycled, seeds 777000+, one generator per image). Every number names the reference it is
measured against:

- ``psnr_converged`` / ``ssim_converged``: the converged run (DPM-Solver++ 2M, 100 steps) — fair
  across samplers and step counts; `converged_reference` also reports 100 vs 200 steps;
- ``psnr_fullcompute`` / ``ssim_fullcompute``: the study's own full compute of the same seeds (fidelity);
- ``fid_real``: FID-proxy (embedded-digits features) against the real held-out digits;
- ``fid_converged``: the same FID-proxy against the converged images of the same seeds: the shift
  from what the model draws at convergence (0 for the converged run itself), beside the shift from
  real digits, which a model's own converged samples need not minimise;
- ``speedup_vs_fullcompute``: end-to-end time of the study's full compute over the schedule's, timed
  interleaved in this process (round-robin over all schedules; median over `repeats` rounds of the
  ratio to the full-compute runs bracketing the round; ``speedup_range`` shows the spread; a close
  call of `dominates` gets REFINE_FACTOR x as many rounds more, ``timing_rounds`` counts them all), on the
  steady clock (`objectives.steady_clock`: process CPU seconds off CUDA, so other load on a shared
  machine does not leak into the ratios; ``timing_clock`` names it).

`score_heldout(pipe, schedules)` -> one dict per schedule; `dominates(a, b)` compares two of them.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

import torch

from .. import objectives as obj
from ..models.digits import prompt_adherence
from ..search.evaluator import Calibration, Evaluator, generate
from ..space.schedule import Schedule
from ..space.trajectory import CONVERGED_SPACING, CONVERGED_STEPS, Trajectory, converged as converged_trajectory, \
    swapped
from .build import default_guidance, default_resolution, make_extractor
from .protocol import HELDOUT_SEED0, HeldoutProtocol  # noqa: F401  (HELDOUT_SEED0 re-exported)
CHECK_IMAGES = 16  # convergence check: PSNR of CONVERGED_STEPS vs 2x steps on this many images
# `dominates(a, b)`: a beats anchor b on held-out data when it is not slower than SPEED_TOLERANCE x b's
# speedup AND it is either PSNR_MARGIN_DB closer to the converged reference with a FID-proxy against
# real digits at most FID_SLACK (relative) above b's (PSNR alone can hide a distribution shift), or has
# a FID-proxy at least FID_MARGIN (relative) lower at no loss of PSNR (a lower FID-proxy alone is no
# win: on the embedded model a schedule 9 dB from the converged images, its contrast lowered, scores
# 21 % below UniPC 10's FID-proxy; `realism` studies find such schedules). The margins sit above the
# noise we measured: CPU timing varies ±10-15 % between runs, PSNR differences below ~1 dB and
# FID-proxy differences below ~20 % do not separate schedules at 200 images (DESIGN §8-9).
SPEED_TOLERANCE = 0.95
PSNR_MARGIN_DB = 1.0
FID_MARGIN = 0.20
FID_SLACK = 0.10
# A close call: a compared pair that passes on quality and whose speed ratio lies within a factor
# CLOSE_BAND of SPEED_TOLERANCE. Its two schedules get REFINE_FACTOR x the rounds again before the
# verdict: near parity a 9-round ratio spread 0.905-1.05 (5-95 %, 40 paired runs of two schedules of
# equal cost on 2 shared cores), as wide as the tolerance; 27 rounds narrow that by about √3.
CLOSE_BAND = 1.08
REFINE_FACTOR = 2


def _cached(cache_dir: str | Path | None, compute: Callable[[], torch.Tensor], **key: Any) -> torch.Tensor:
    """`compute()` once, stored under `cache_dir` by `reference_key(**key)` (no cache_dir: not stored)."""
    if cache_dir is None:
        return obj.check_images(compute(), "held-out reference").float().cpu()
    return obj.load_or_compute_reference(cache_dir, obj.reference_key(**key), compute)


def _key(pipe: Any, calib: Calibration, model: str, steps: int) -> dict[str, Any]:
    return dict(model=model, prompts=calib.prompts, seeds=calib.seeds, resolution=[calib.height, calib.width],
                steps=steps, scheduler=type(pipe.scheduler).__name__, guidance=calib.guidance,
                dtype=str(getattr(pipe, "dtype", "float32")))


@dataclass
class ConvergedReference:
    """The converged images, the convergence check (PSNR of `steps` vs `check_steps` on `check_images`)
    and the images' own FID-proxy against real digits (set by `score_heldout`): the realism of the
    trajectory every schedule approaches, which fewer-step solvers can undercut by their own error."""

    images: torch.Tensor
    scheduler: str
    steps: int
    check_psnr_db: float | None = None
    check_images: int = 0
    check_steps: int = 0
    fid_real: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "steps": self.steps, "images": len(self.images), "fid_real": self.fid_real,
                "check": {"psnr_db": self.check_psnr_db, "images": self.check_images,
                          "steps": [self.steps, self.check_steps]}}


def converged_reference(pipe: Any, prompts: list[str], seeds: list[int], *, guidance: float | None = None,
                        steps: int = CONVERGED_STEPS, check: int = CHECK_IMAGES, cache_dir: str | Path | None = None,
                        model: str = "embedded", batch_size: int = 20) -> ConvergedReference:
    """DPM-Solver++ 2M (linspace timesteps) at `steps` on `prompts`/`seeds`, cached on disk under `cache_dir`.

    `check` > 0 also generates the first `check` images at 2x`steps` and reports their PSNR against
    the `steps` images (how far from converged the reference itself is).
    """
    size = default_resolution(pipe)
    calib = Calibration(list(prompts), list(seeds), steps, default_guidance(pipe) if guidance is None else guidance,
                        size, size, batch_size)
    trajectory = converged_trajectory()
    with swapped(pipe, trajectory) as scheduler:
        images = _cached(cache_dir, lambda: generate(pipe, calib), **_key(pipe, calib, model, steps),
                         timestep_spacing=CONVERGED_SPACING)
        ref = ConvergedReference(images, type(scheduler).__name__, steps)
        if check > 0:
            k = min(check, len(prompts))
            finer = generate(pipe, calib, limit=k, steps=2 * steps)
            ref.check_psnr_db = obj.paired_metrics(finer, images[:k])["psnr"]
            ref.check_images, ref.check_steps = k, 2 * steps
    return ref


@contextlib.contextmanager
def count_calls(unet: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Counts U-Net invocations (`unet`) and those that ran its network at all (`computed`: not reuse)."""
    counts = {"unet": 0, "computed": 0}

    def bump(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            counts[name] += 1
        return hook

    handles = [unet.register_forward_pre_hook(bump("unet")), unet.conv_in.register_forward_pre_hook(bump("computed"))]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def _digit_features(n_images: int, device: str | torch.device) -> torch.nn.Module | None:
    """Embedded-digits features with fewer dimensions than `n_images` (None when too few images for
    any: the covariance would be singular)."""
    extractor = make_extractor(SimpleNamespace(extractor="embedded-digits", prompts=HeldoutProtocol(n_images).prompts),
                               str(device))
    return None if extractor.num_features >= n_images else extractor


def real_fid(n_images: int, device: str | torch.device = "cpu") -> obj.FidProxy | None:
    """FID-proxy of `n_images` images against the real held-out digits (None: too few images)."""
    extractor = _digit_features(n_images, device)
    return None if extractor is None else obj.FidProxy(extractor, reference_images=HeldoutProtocol.real_images())


def converged_fid(converged: ConvergedReference, device: str | torch.device = "cpu") -> obj.FidProxy | None:
    """FID-proxy against the converged reference's own images (None: too few images)."""
    extractor = _digit_features(len(converged.images), device)
    return None if extractor is None else obj.FidProxy(extractor, reference_images=converged.images)


def _name(schedule: Schedule | None, k: int) -> str:
    if schedule is None:
        return "full compute"
    return str(schedule.meta.get("name") or f"schedule_{k}")


def score_heldout(pipe: Any, schedules: Sequence[Schedule | None], n_images: int = 200, *,
                  names: Sequence[str] | None = None, steps: int | None = None, scheduler: str | None = None,
                  guidance: float | None = None, model: str = "embedded", cache_dir: str | Path | None = None,
                  converged: ConvergedReference | None = None, repeats: int = 5, latency_images: int = 4,
                  batch_size: int = 20, log: Callable[[str], None] | None = None,
                  compare: Sequence[tuple[int, int]] = (), refine_factor: int = REFINE_FACTOR,
                  seed0: int = HELDOUT_SEED0) -> list[dict[str, Any]]:
    """Score each schedule on `n_images` held-out images (seeds from `seed0`); one dict per schedule, in order.

    The study's full compute is `pipe` with `scheduler` (None: its own) at `steps` (None: the
    pipeline's default); a schedule runs on its own trajectory (`Schedule.trajectory`), else on those. None
    in `schedules` is that full compute itself (a plain `Schedule.full` runs through the hooks: same
    images, its own timing). References (converged, full compute) are cached under `cache_dir` when
    given; pass `converged` (for the same `n_images` held-out images) to reuse one already computed.
    `compare`: (a, b) index pairs that `dominates(rows[a], rows[b])` will judge; their close calls
    (`close_calls`) are timed `refine_factor` x `repeats` more rounds.
    """
    log = log or (lambda _: None)
    calib = HeldoutProtocol(n_images, seed0).calibration(pipe, steps, guidance, batch_size)
    device = pipe.device
    hardware = obj.device_name(device)
    if converged is None:
        log(f"converged reference: {converged_trajectory().label()}, {n_images} images")
        converged = converged_reference(pipe, calib.prompts, calib.seeds, guidance=calib.guidance, cache_dir=cache_dir,
                                        model=model, batch_size=batch_size)
    elif len(converged.images) != n_images:
        raise ValueError(f"the converged reference holds {len(converged.images)} images, not {n_images}")
    fid = real_fid(n_images, device)
    if fid is not None and converged.fid_real is None:
        converged.fid_real = fid(converged.images)
    fids = {"fid_real": fid, "fid_converged": converged_fid(converged, device)}
    with swapped(pipe, Trajectory(scheduler, calib.steps) if scheduler else None) as study_scheduler:
        study_scheduler_name = type(study_scheduler).__name__
        log(f"full compute: {study_scheduler_name} {calib.steps} steps, {n_images} images")
        full = _cached(cache_dir, lambda: generate(pipe, calib), **_key(pipe, calib, model, calib.steps))

        def one_run(run: Callable[[], Any]) -> float:
            return obj.measure_latency(run, device, warmup=0, repeats=1, clock=obj.steady_clock(device)).median_s

        ev = Evaluator(pipe, calib, [], reference=full, fid=lambda _: math.nan, measure_latency=one_run,
                       device_name=hardware, latency_images=latency_images)
        rows: list[dict[str, Any]] = []
        for k, schedule in enumerate(schedules):
            name = names[k] if names is not None else _name(schedule, k)
            log(f"[{k + 1}/{len(schedules)}] {name}: generating {n_images} images")
            images = full if schedule is None else ev.images(schedule)
            rows.append(_quality(name, schedule, images, full, converged, fids, calib, study_scheduler_name, hardware))
        with obj.timing_session(device):  # one thread-count switch for all the rounds
            timing = _time_interleaved(ev, pipe, schedules, repeats, log)
            _set_timing(rows, schedules, timing, pipe)
            close = close_calls(rows, compare) if refine_factor > 0 else []
            if close:
                log(f"{len(close)} schedules in close calls: {refine_factor * repeats} more timing rounds")
                timing.pool(close, _time_interleaved(ev, pipe, [schedules[i] for i in close], refine_factor * repeats,
                                                     log))
                _set_timing(rows, schedules, timing, pipe)
    return rows


def _trajectory(schedule: Schedule | None) -> Trajectory | None:
    return schedule.trajectory if schedule is not None else None


def _quality(name: str, schedule: Schedule | None, images: torch.Tensor, full: torch.Tensor,
             converged: ConvergedReference, fids: dict[str, obj.FidProxy | None], calib: Calibration,
             study_scheduler: str, hardware: str) -> dict[str, Any]:
    """Everything but timing and call counts for one schedule's held-out images."""
    obj.check_images(images, name)
    vs_conv = obj.paired_metrics(images, converged.images)
    vs_full = obj.paired_metrics(images, full)
    digits = [i % 10 for i in range(len(images))]
    return {
        "name": name, "scheduler": traj.scheduler if (traj := _trajectory(schedule)) else study_scheduler,
        "steps": traj.steps if traj else calib.steps, "n_images": len(images), "seed0": calib.seeds[0],
        "psnr_converged": vs_conv["psnr"], "ssim_converged": vs_conv["ssim"],
        "psnr_fullcompute": vs_full["psnr"], "ssim_fullcompute": vs_full["ssim"],
        **{key: fid(images) if fid is not None else None for key, fid in fids.items()},
        "adherence": prompt_adherence(images, digits),
        "schedule_key": schedule.key() if schedule is not None else None, "device": hardware,
    }


@dataclass
class _Timing:
    """Per schedule: its run times (of `images` images), its speedups (one per round) and U-Net call
    counts per image batch; the full-compute runs bracketing the rounds."""

    times: list[list[float]]
    ratios: list[list[float]]
    calls: list[dict[str, int]]
    bracket: list[float]
    images: int

    def pool(self, indices: Sequence[int], more: "_Timing") -> None:
        """Add `more`'s rounds (timing the schedules at `indices`, in that order) to those schedules'."""
        for j, i in enumerate(indices):
            self.times[i] += more.times[j]
            self.ratios[i] += more.ratios[j]
        self.bracket += more.bracket


def _time_interleaved(ev: Evaluator, pipe: Any, schedules: Sequence[Schedule | None], rounds: int,
                      log: Callable[[str], None]) -> _Timing:
    """Round-robin timing of `schedules` (None: full compute through no hooks).

    Every round times the full compute, then each schedule; one more full-compute run closes the
    last round. A schedule's speedup in a round is (mean of the full-compute runs bracketing the
    round) / (its time in that round), so load drift between rounds cancels.
    """
    entries: list[Schedule | None] = [None, *schedules]
    times: list[list[float]] = [[] for _ in entries]
    calls: list[dict[str, int]] = [{} for _ in entries]
    ev.latency(None)  # warm-up (the full-compute images may have come from the disk cache)
    per_run = len(ev.calibration.chunks(ev.latency_images))
    rounds = max(1, rounds)
    for r in range(rounds):
        log(f"timing round {r + 1}/{rounds}")
        for i, schedule in enumerate(entries):
            with count_calls(pipe.unet) as counts:
                times[i].append(ev.latency(schedule))
            calls[i] = {k: v // per_run for k, v in counts.items()}
    bracket = [*times[0], ev.latency(None)]
    base_by_round = [(bracket[r] + bracket[r + 1]) / 2 for r in range(rounds)]
    ratios = [[b / t for b, t in zip(base_by_round, ts)] for ts in times[1:]]
    return _Timing(times[1:], ratios, calls[1:], bracket, ev.latency_images)


def _set_timing(rows: list[dict[str, Any]], schedules: Sequence[Schedule | None], timing: _Timing, pipe: Any) -> None:
    """Timing fields and call counts of each row (medians over its rounds), in place."""
    for i, (row, schedule) in enumerate(zip(rows, schedules)):
        calls, ratios = timing.calls[i], timing.ratios[i]
        sched_counts = (schedule.counts() if schedule is not None
                        else {"full": calls["unet"], "shallow": 0, "reuse": 0, "forecast": 0})
        row.update(unet_calls=calls["unet"], unet_computed=calls["computed"], **sched_counts,
                   latency_s=statistics.median(timing.times[i]), latency_images=timing.images,
                   fullcompute_latency_s=statistics.median(timing.bracket),
                   speedup_vs_fullcompute=statistics.median(ratios), speedup_range=[min(ratios), max(ratios)],
                   timing_rounds=len(ratios), timing_clock=obj.steady_clock(pipe.device))


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether row `a` beats anchor row `b` on held-out data (thresholds: module constants).

    a.speedup >= SPEED_TOLERANCE * b.speedup and `better_quality(a, b)`.
    """
    return _speed_ratio(a, b) >= SPEED_TOLERANCE and better_quality(a, b)


def better_quality(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The quality half of `dominates`: a.psnr_converged >= b.psnr_converged + PSNR_MARGIN_DB and
    a.fid_real <= (1 + FID_SLACK) * b.fid_real, or a.fid_real <= (1 - FID_MARGIN) * b.fid_real and
    a.psnr_converged >= b.psnr_converged; without FID-proxy values (too few images) only the first PSNR
    condition counts."""
    fa, fb = a.get("fid_real"), b.get("fid_real")
    has_fid = fa is not None and fb is not None
    if a["psnr_converged"] >= b["psnr_converged"] + PSNR_MARGIN_DB and (not has_fid or fa <= (1 + FID_SLACK) * fb):
        return True
    return has_fid and fa <= (1 - FID_MARGIN) * fb and a["psnr_converged"] >= b["psnr_converged"]


def _speed_ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return a["speedup_vs_fullcompute"] / b["speedup_vs_fullcompute"]


def close_calls(rows: Sequence[dict[str, Any]], compare: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of the rows in a close call: a pair (a, b) of `compare` where `a` passes
    `better_quality` and its speed ratio to `b` lies within a factor CLOSE_BAND of SPEED_TOLERANCE,
    so that timing noise alone could decide `dominates`."""
    close: set[int] = set()
    for a, b in compare:
        ratio = _speed_ratio(rows[a], rows[b])
        if a != b and better_quality(rows[a], rows[b]) and 1 / CLOSE_BAND <= ratio / SPEED_TOLERANCE <= CLOSE_BAND:
            close.update((a, b))
    return sorted(close)


def beaten_anchors(row: dict[str, Any], anchors: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the anchor rows that `row` dominates."""
    return [b["name"] for b in anchors if b is not row and dominates(row, b)]


__all__ = ["CHECK_IMAGES", "FID_MARGIN", "FID_SLACK", "HELDOUT_SEED0", "PSNR_MARGIN_DB", "SPEED_TOLERANCE", "ConvergedReference",
           "HeldoutProtocol",
           "beaten_anchors", "converged_reference", "count_calls", "dominates",
           "converged_fid", "real_fid", "score_heldout"]
