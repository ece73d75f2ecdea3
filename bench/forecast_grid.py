"""Where forecasting pays on the embedded model: a grid of forecast-reuse schedules on fast solvers.

k full calls at `full_positions(n, k, warp, 0)` on DPM-Solver++ 2M / UniPC / PLMS at several step
counts n, every other call a forecast reuse (order, damping); quality is PSNR against the converged
reference (DPM-Solver++ 2M, 100 steps) and FID-proxy against real held-out digits on `--images`
held-out images (seeds 777000+), speedup vs
PLMS 50 full compute from a cost model calibrated in this process (`objectives.costmodel`, process
clock). Beside each k: UniPC and DPM-Solver++ 2M at k steps (what a user runs instead). This grid
chose the structured encoding's first-generation forecasting members (`space.structured`).

    PYTHONPATH=src python bench/forecast_grid.py [--images 60]    # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import torch

from datosearch import objectives as obj
from datosearch.objectives.costmodel import calibrate
from datosearch.space.placement import from_full_calls, full_positions
from datosearch.space.schedule import REUSE, Schedule
from heldout_setup import held_out, on

RESULTS = Path(__file__).parent / "results"
BASES = (("dpmpp2m", 15), ("dpmpp2m", 20), ("dpmpp2m", 25), ("unipc", 15), ("unipc", 20), ("pndm", 25), ("pndm", 50))
FULLS = (5, 7, 10)
WARPS = (0.5, 0.6, 0.8)
FORECASTS = ((1, 1.0), (1, 0.75), (2, 1.0))


def forecast_schedule(n: int, k: int, warp: float, order: int, damping: float) -> Schedule:
    """k full calls at `full_positions(n, k, warp, 0)`, every other call a forecast reuse."""
    return from_full_calls(n, full_positions(n, k, warp, 0.0), REUSE).with_forecast(order, damping)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=60)
    args = p.parse_args()
    start = time.perf_counter()
    h = held_out(args.images, 30, latency_images=4,
                 measure_latency=lambda run: obj.measure_latency(run, "cpu", 0, 1, clock="process").median_s)
    pipe, conv, fid, ev, calls = h.pipe, h.conv, h.fid, h.ev, h.calls

    solvers = ["PNDMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]
    model = calibrate(ev.measured_latency, pipe.unet, calls, solvers, [10, 50], branches=[0], repeats=3)
    base_s = model.predict(None, n_calls=calls("pndm", 50))
    rows = []

    def score(label: str, schedule: Schedule, k: int) -> None:
        images = ev.images(schedule)
        psnr = obj.paired_metrics(images, conv.images)["psnr"]
        rows.append({"label": label, "full": k, "scheduler": schedule.trajectory.scheduler,
                     "steps": schedule.trajectory.steps, "psnr_converged": psnr, "fid_real": fid(images) if fid else None,
                     "speedup": base_s / model.predict(schedule)})
        print(f"{label:36s} {psnr:6.2f} dB {rows[-1]['fid_real'] or 0:6.1f} {rows[-1]['speedup']:5.2f}x", flush=True)

    for name, k in itertools.product(("unipc", "dpmpp2m"), FULLS):
        score(f"{name} {k} steps", on(Schedule.full(k), name, k), k)
    for (name, steps), k, warp, (order, damping) in itertools.product(BASES, FULLS, WARPS, FORECASTS):
        schedule = on(forecast_schedule(calls(name, steps), k, warp, order, damping), name, steps)
        score(f"{name} {steps}: {k} full, warp {warp}, o{order} d{damping}", schedule, k)
    meta = {"device": obj.device_name("cpu"), "torch": torch.__version__, "images": args.images,
            "cost_model_r2": model.stats["r2"], "runtime_s": time.perf_counter() - start}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forecast-grid.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (RESULTS / "forecast-grid.md").write_text(markdown(rows, meta))
    return 0


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Forecast-reuse schedules on fast solvers (embedded model, held-out seeds)", "",
             f"{meta['device']}, torch {meta['torch']}; {meta['images']} held-out images, PSNR against DPM-Solver++ 2M "
             f"100 steps (linspace timesteps), FID-proxy against real held-out digits; speedup vs PLMS 50 "
             f"full compute from a cost model calibrated in the same run (R² "
             f"{meta['cost_model_r2']:.3f}, process clock, 4 images per generation). Runtime "
             f"{meta['runtime_s'] / 60:.1f} min. `bench/forecast_grid.py`; raw rows in `forecast-grid.json`.", ""]
    for k in FULLS:
        mine = sorted((r for r in rows if r["full"] == k), key=lambda r: -r["psnr_converged"])
        plain = [r for r in mine if r["label"].endswith("steps")]
        lines += [f"## {k} full calls", "", "| schedule | PSNR vs converged | FID-proxy vs real | speedup |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['label']} | {r['psnr_converged']:.2f} | {r.get('fid_real') or float('nan'):.1f} | "
                  f"{r['speedup']:.2f}x |" for r in plain + [r for r in mine if r not in plain][:12]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
