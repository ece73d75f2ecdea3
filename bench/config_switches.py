"""Which scheduler config switches move few-step quality, on calibration-side images (issue 30).

    PYTHONPATH=src python bench/config_switches.py [--images 16]

On the embedded model and the study's calibration seeds (0..N-1; never held-out seeds), PSNR against the
converged reference (DPM-Solver++ 2M, 100 linspace steps) of each switch of `SWITCHES` against the solver's
defaults, on:
- full compute at 5 / 7 / 10 steps (DPM-Solver++: timesteps warped as the first generation places them,
  `warp_timesteps(n, 0.77|0.9|0.9, 1.7)`; UniPC: its default spacing);
- forecasting plans: 5 / 7 / 10 full calls on 8 / 12 / 17 steps, ending on a full call, every other call
  order-2 forecast reuse (the refined first-generation members' shape).
The switches found to move PSNR by >= 0.3 dB in some case, either way, are the structured encoding's option
genes (`space.trajectory.SWITCHES`). Writes bench/results/config-switches.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from heldout_setup import held_out

from datosearch import dato
from datosearch.objectives import ObjectiveError, device_name, paired_metrics
from datosearch.search.evaluator import generate
from datosearch.space.placement import full_positions
from datosearch.space.schedule import FULL, REUSE, Forecast, Schedule
from datosearch.space.trajectory import Trajectory, warp_timesteps

RESULTS = Path(__file__).parent / "results"
DPM, UNIPC = "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"
PROBED = {DPM: [{"final_sigmas_type": "sigma_min"}, {"solver_type": "heun"}, {"solver_order": 3},
                {"lower_order_final": False}, {"euler_at_final": True}],
          UNIPC: [{"solver_type": "bh1"}, {"disable_corrector": [0]}, {"final_sigmas_type": "sigma_min"},
                  {"solver_order": 3}, {"lower_order_final": False}]}
BASE = {DPM: {"algorithm_type": "dpmsolver++", "solver_order": 2}, UNIPC: {}}
FULL_STEPS = {5: (0.77, 1.7), 7: (0.9, 1.7), 10: (0.9, 1.7)}
FORECAST = ((5, 8), (7, 12), (10, 17))


def cases(solver: str) -> list[tuple[str, int, Schedule | None]]:
    """(label, steps, plan or None for full compute) of one solver."""
    out: list[tuple[str, int, Schedule | None]] = [(f"full {n}", n, None) for n in FULL_STEPS]
    for k, n in FORECAST:
        full = set(full_positions(n, k, 1.0, 0.0, True))
        plan = [FULL if t in full else REUSE for t in range(n)]
        forecast = {t: Forecast(2, 1.0) for t in range(n) if t not in full}
        out.append((f"{k} full of {n}", n, Schedule(plan, forecast=forecast)))
    return out


def trajectory(solver: str, steps: int, options: dict) -> Trajectory:
    timesteps = warp_timesteps(steps, *FULL_STEPS.get(steps, (0.9, 1.7))) if solver == DPM else None
    return Trajectory(solver, steps, {**BASE[solver], **options}, timesteps=timesteps)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=16)
    args = p.parse_args()
    started = time.perf_counter()
    h = held_out(args.images, args.images, seed0=0)
    torch.set_num_threads(2)
    rows = []
    for solver, probed in PROBED.items():
        for label, steps, plan in cases(solver):
            def psnr(options: dict) -> float | None:
                traj = trajectory(solver, steps, options)
                schedule = Schedule([FULL] * steps, trajectory=traj) if plan is None else \
                    Schedule(plan.cache, forecast=plan.forecast, trajectory=traj)
                handle = dato.apply(h.pipe, schedule)
                try:
                    images = generate(h.pipe, h.calib, trajectory=traj)
                finally:
                    handle.remove()
                try:
                    return round(paired_metrics(images, h.conv.images)["psnr"], 3)
                except ObjectiveError:  # NaN images
                    return None

            default = psnr({})
            for options in probed:
                rows.append({"solver": solver, "case": label, "option": options, "default_psnr": default,
                             "psnr": psnr(options)})
                print(json.dumps(rows[-1]), flush=True)
    result = {"device": device_name(torch.device("cpu")), "images": args.images, "seeds": f"0..{args.images - 1}",
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "config-switches.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Config switches at few steps ({args.images} calibration images, seeds {result['seeds']}, "
             f"{result['device']})", "", "PSNR against the converged reference; each switch minus the defaults (dB).", "",
             "| solver | switch | " + " | ".join(c for c, _, _ in cases(DPM)) + " |",
             "|---|---|" + "---|" * len(cases(DPM))]
    for solver, probed in PROBED.items():
        for options in probed:
            mine = [r for r in rows if r["solver"] == solver and r["option"] == options]
            cells = [f"{r['psnr'] - r['default_psnr']:+.2f}" if None not in (r["psnr"], r["default_psnr"]) else "NaN"
                     for r in mine]
            name = ", ".join(f"{k}={v}" for k, v in options.items())
            lines.append(f"| {solver.replace('Scheduler', '')} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Defaults: " + "; ".join(f"{s.replace('Scheduler', '')} " + ", ".join(
        f"{r['case']} {r['default_psnr'] or float('nan'):.2f}" for r in rows if r["solver"] == s and r["option"] == PROBED[s][0])
        for s in PROBED) + "."]
    (RESULTS / "config-switches.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
