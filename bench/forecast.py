"""Forecasting benchmark: what forecasting buys, what it costs, and along which axis to extrapolate.

    PYTHONPATH=src python bench/forecast.py [--images 40] [--rounds 5] [--sd15-steps 10]

1. Quality (embedded model, the held-out protocol's images: `studies.protocol.HeldoutProtocol`,
   seeds 777000+, one generator per image; PSNR against full compute of the same trajectory): reuse
   vs forecast order 1 / 2, extrapolating over the call index or over the timestep value, on PLMS 50
   (uniform timesteps) and DPM-Solver++ 2M with Karras sigmas at 25 steps (non-uniform timesteps).
2. Time (embedded model): the same plan with reuse and with forecasting, interleaved rounds, medians.
3. Overhead on an SD1.5-shaped random-weight U-Net (64x64 latents, CFG batch 2): seconds per
   generation with reuse vs forecast, and the bytes the forecast history holds.
Writes bench/results/forecast.{json,md} with the hardware named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any, Iterator

import torch

import datosearch
from datosearch.dato import caching, state as dato_state
from datosearch.models import load
from datosearch.objectives import device_name, paired_metrics
from datosearch.space import Schedule
from datosearch.space.trajectory import Trajectory
from datosearch.studies.protocol import HELDOUT_SEED0, HeldoutProtocol

RESULTS = Path(__file__).parent / "results"
PLMS_50 = Trajectory("PNDMScheduler", 50)
TRAJECTORIES = {"PLMS 50": PLMS_50,
                "DPM++ 2M Karras 25": Trajectory("DPMSolverMultistepScheduler", 25, {"use_karras_sigmas": True})}


def plans(n: int) -> dict[str, Schedule]:
    """Plans over `n` calls: DeepCache uniform N=3/5/8 (shallow b0) and 7/10 late-dense full calls + reuse."""
    out = {f"uniform N={k} b0": Schedule.deepcache(n, k, 0) for k in (3, 5, 8)}
    for k in (7, 10):
        full = sorted({round(n * (i / k) ** 0.6) for i in range(k)})
        out[f"{len(full)} full late-dense, reuse"] = Schedule(["full" if t in full else "reuse" for t in range(n)])
    return out


@contextlib.contextmanager
def timestep_axis() -> Iterator[None]:
    """Make the forecast history extrapolate over the timestep value instead of the call index."""
    hook_forward, remember, predict = caching.UNetPlanHook.new_forward, dato_state.DaToState.remember, \
        dato_state.DaToState.predict

    def new_forward(self, module, sample, timestep, *args, **kwargs):
        self.ctx.state().timestep = float(timestep.flatten()[0] if torch.is_tensor(timestep) else timestep)
        return hook_forward(self, module, sample, timestep, *args, **kwargs)

    def swap(fn):
        def wrapped(self, *args, **kwargs):
            call, self.call = self.call, -self.timestep  # decreasing timesteps: extrapolate forward in -t
            try:
                return fn(self, *args, **kwargs)
            finally:
                self.call = call
        return wrapped

    caching.UNetPlanHook.new_forward = new_forward
    dato_state.DaToState.remember, dato_state.DaToState.predict = swap(remember), swap(predict)
    try:
        yield
    finally:
        caching.UNetPlanHook.new_forward = hook_forward
        dato_state.DaToState.remember, dato_state.DaToState.predict = remember, predict


def quality(pipe: Any, n_images: int) -> list[dict[str, Any]]:
    protocol = HeldoutProtocol(n_images)
    rows = []
    for label, trajectory in TRAJECTORIES.items():
        ref = protocol.generate(pipe, trajectory)
        for name, plan in plans(trajectory.calls(pipe.scheduler.config)).items():
            row: dict[str, Any] = {"trajectory": label, "plan": name, "full": plan.counts()["full"]}
            for col, order, axis in (("reuse", 0, "call"), ("order 1 call", 1, "call"), ("order 2 call", 2, "call"),
                                     ("order 1 timestep", 1, "timestep"), ("order 2 timestep", 2, "timestep")):
                with timestep_axis() if axis == "timestep" else contextlib.nullcontext():  # before apply binds hooks
                    handle = datosearch.apply(pipe, plan.with_forecast(order))
                    images = protocol.generate(pipe, trajectory)
                    handle.remove()
                row[col] = round(paired_metrics(images, ref)["psnr"], 2)
            rows.append(row)
            print(row, flush=True)
    return rows


def interleaved(runs: dict[str, Any], rounds: int) -> dict[str, float]:
    """Median seconds per run, timed round-robin after one warm-up each."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def timed(pipe: Any, plan: Schedule, protocol: HeldoutProtocol) -> Any:
    def run() -> None:
        handle = datosearch.apply(pipe, plan)
        protocol.generate(pipe, PLMS_50)
        handle.remove()
    return run


def history_bytes(handle: Any) -> int:
    """Bytes of forecast history held now (call it during a generation: its end drops the state)."""
    st = handle.context.state()
    return sum(v.numel() * v.element_size() for h in st.history.values() for _, v in h.points)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sd15-steps", type=int, default=10)
    p.add_argument("--sd15-size", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)
    pipe = load("embedded")
    pipe.set_progress_bar_config(disable=True)
    result: dict[str, Any] = {"hardware": device_name("cpu"), "torch": torch.__version__, "images": args.images}
    result["quality"] = quality(pipe, args.images)

    timing_images = HeldoutProtocol(20, seed0=0)  # timing only: 20 prompts, seeds 0..19
    base = plans(PLMS_50.calls(pipe.scheduler.config))
    timing = {}
    for name in ("10 full late-dense, reuse", "uniform N=5 b0"):
        t = interleaved({"reuse": timed(pipe, base[name], timing_images),
                         "forecast order 2": timed(pipe, base[name].with_forecast(2), timing_images)}, args.rounds)
        timing[name] = {k: round(v, 4) for k, v in t.items()} | {"ratio": round(t["forecast order 2"] / t["reuse"], 4)}
        print(name, timing[name], flush=True)
    result["embedded_time_s_per_20_images"] = timing

    from datosearch.models.tiny import sd15_pipeline

    sd = sd15_pipeline()
    sd.set_progress_bar_config(disable=True)
    n = args.sd15_steps + 1
    sd_rows = {}
    for name, plan in (("N=5 shallow b0", Schedule.deepcache(n, 5, 0)),
                       ("reuse, 3 full", Schedule(["full" if t in (0, 4, 8) else "reuse" for t in range(n)]))):
        def run(sched: Schedule) -> Any:
            def go() -> None:
                handle = datosearch.apply(sd, sched)
                peak = [0]

                def note(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
                    peak[0] = max(peak[0], history_bytes(handle))
                    return kwargs
                with torch.no_grad():
                    sd(["an astronaut"], num_inference_steps=args.sd15_steps, height=args.sd15_size,
                       width=args.sd15_size, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
                       output_type="latent", callback_on_step_end=note)
                run.bytes = peak[0]
                handle.remove()
            return go
        reuse, forecast = run(plan), run(plan.with_forecast(2))
        t = interleaved({"reuse": reuse, "forecast order 2": forecast}, max(2, args.rounds // 2))
        sd_rows[name] = {k: round(v, 3) for k, v in t.items()} | {
            "ratio": round(t["forecast order 2"] / t["reuse"], 4), "history_bytes": int(getattr(run, "bytes", 0))}
        print(name, sd_rows[name], flush=True)
    result["sd15"] = {"steps": args.sd15_steps, "size": args.sd15_size, "guidance": 7.5, "rows": sd_rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forecast.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "forecast.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    cols = ["reuse", "order 1 call", "order 2 call", "order 1 timestep", "order 2 timestep"]
    lines = [f"# Forecasting ({r['hardware']}, torch {r['torch']})", "",
             f"PSNR (dB) against full compute of the same trajectory, {r['images']} held-out images (seeds {HELDOUT_SEED0}+).",
             "", "| trajectory | plan | full calls | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for q in r["quality"]:
        lines.append(f"| {q['trajectory']} | {q['plan']} | {q['full']} | " + " | ".join(str(q[c]) for c in cols) + " |")
    lines += ["", "Embedded model, 20 images per generation, PLMS 50, median seconds of interleaved rounds:", "",
              "| plan | reuse | forecast order 2 | ratio |", "|---|---|---|---|"]
    for name, t in r["embedded_time_s_per_20_images"].items():
        lines.append(f"| {name} | {t['reuse']} | {t['forecast order 2']} | {t['ratio']} |")
    sd = r["sd15"]
    lines += ["", f"SD1.5-shaped random-weight U-Net, {sd['size']}px, {sd['steps']} PNDM steps, CFG {sd['guidance']}:", "",
              "| plan | reuse s | forecast order 2 s | ratio | history bytes |", "|---|---|---|---|---|"]
    for name, t in sd["rows"].items():
        lines.append(f"| {name} | {t['reuse']} | {t['forecast order 2']} | {t['ratio']} | {t['history_bytes']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
