"""Can caching on a tuned trajectory beat tuned fewer steps at the same U-Net calls? (issue 30, measured)

    PYTHONPATH=src python bench/tuned_ceiling.py [--calibration 16] [--trials 200] [--heldout 200]

For K = 5, 7, 10 full U-Net calls, on the embedded model:
- "tuned": DPM-Solver++ 2M at K steps, timesteps tuned as every study tunes its anchors (`studies.tuning`:
  warp grid, then coordinate descent) on the calibration images;
- "cached": `studies.refine.search` (seeded; Optuna's TPE over K+1..2K steps when the stored results were
  measured, GP over the alternating plan's timestep pair since refine@5): plans as fast as K calls, DPM-Solver++
  2M, timesteps warped by (start, power), K full calls placed as the structured encoding places them, the
  other calls forecast reuse (reuse runs no U-Net layer: K calls plus scheduler steps);
Both are chosen on the calibration images only (seeds 0..C-1, PSNR against the converged reference:
DPM-Solver++ 2M, 100 linspace steps), then scored with default spacing on held-out images
(`heldout.score_heldout`: seeds 777000+, PSNR to the converged reference, FID-proxy against real digits,
speed against the study's full compute, PLMS 50, timed interleaved). Writes bench/results/tuned-ceiling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import optuna
import torch

from datosearch import models
from datosearch.objectives import device_name
from datosearch.search.evaluator import Calibration, Evaluator
from datosearch.space.schedule import FULL, Schedule
from datosearch.space.trajectory import Trajectory
from datosearch.studies import heldout as ho
from datosearch.studies import refine, tuning
from datosearch.studies.build import default_guidance, default_prompts, default_resolution

RESULTS = Path(__file__).parent / "results"
DPM = "DPMSolverMultistepScheduler"
CALLS = (5, 7, 10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calibration", type=int, default=16, help="calibration images (seeds 0..N-1)")
    p.add_argument("--trials", type=int, default=200, help="TPE trials per call count")
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("datosearch").setLevel(logging.ERROR)
    pipe, start = models.load("embedded"), time.perf_counter()
    prompts, seeds = default_prompts(args.calibration)
    size, guidance = default_resolution(pipe), default_guidance(pipe)
    calib = Calibration(prompts, seeds, 50, guidance, size, size, batch_size=args.calibration)
    reference = ho.converged_reference(pipe, prompts, seeds, guidance=guidance, check=0).images
    ev = Evaluator(pipe, calib, [], reference=reference, fid=lambda _: 0.0, measure_latency=lambda _: 0.0)
    scorer = tuning._Search(pipe, calib, reference)
    rows, schedules = [], []
    for k in CALLS:
        tuned = tuning._found(scorer, DPM, k, "timesteps", None)["tuned"]
        best, value = refine.search(ev, reference, k, args.trials, args.seed)
        rows.append({"calls": k, "tuned": list(tuned.timesteps), "tuned_calibration_psnr": round(scorer(tuned), 3),
                     "default_calibration_psnr": round(scorer(Trajectory(DPM, k)), 3),
                     "cached": best.to_dict(), "cached_label": best.meta["label"],
                     "cached_calibration_psnr": round(value, 3), "trials": args.trials})
        print(rows[-1]["calls"], rows[-1]["cached_label"], rows[-1]["tuned_calibration_psnr"], value, flush=True)
        best = best.with_meta(name=f"cached-{k}")
        full_tuned = Schedule([FULL] * k, trajectory=tuned, meta={"name": f"dpmpp2m-{k}-tuned"})
        full_default = Schedule([FULL] * k, trajectory=Trajectory(DPM, k), meta={"name": f"dpmpp2m-{k}"})
        schedules += [full_default, full_tuned, best]
    calibration_s = time.perf_counter() - start
    names = [s.meta["name"] for s in schedules]
    scored = ho.score_heldout(pipe, [None, *schedules], args.heldout, names=["full", *names], repeats=5,
                              log=lambda text: print(text, flush=True), refine_factor=0)
    result = {"device": device_name(torch.device("cpu")), "calibration_images": args.calibration,
              "trials": args.trials, "heldout_images": args.heldout, "seed": args.seed, "rows": rows,
              "calibration_seconds": round(calibration_s, 1), "seconds": round(time.perf_counter() - start, 1),
              "heldout": [{key: r[key] for key in ("name", "steps", "full", "psnr_converged", "fid_real",
                                                    "speedup_vs_fullcompute")} for r in scored]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuned-ceiling.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / "tuned-ceiling.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    by_name = {r["name"]: r for r in result["heldout"]}
    lines = [f"Caching on a tuned trajectory against tuned fewer steps, embedded model ({result['device']}). "
             f"Chosen on {result['calibration_images']} calibration images (TPE, {result['trials']} trials per row, "
             f"seed {result['seed']}); scored on {result['heldout_images']} held-out images (seeds 777000+). "
             f"PSNR (dB) against the converged reference; FID-proxy against real digits; speed against PLMS 50.", "",
             "| full calls | plan | calibration PSNR | held-out PSNR | FID-proxy | speed |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        k = row["calls"]
        for name, label, calib in [(f"dpmpp2m-{k}", f"DPM-Solver++ {k}, default spacing", row["default_calibration_psnr"]),
                                   (f"dpmpp2m-{k}-tuned", f"DPM-Solver++ {k}, tuned", row["tuned_calibration_psnr"]),
                                   (f"cached-{k}", row["cached_label"], row["cached_calibration_psnr"])]:
            h = by_name[name]
            fid = f"{h['fid_real']:.1f}" if h.get("fid_real") is not None else "-"
            lines.append(f"| {k} | {label} | {calib:.2f} | {h['psnr_converged']:.2f} | {fid} | "
                         f"{h['speedup_vs_fullcompute']:.2f}x |")
    lines.append("")
    lines.append(f"Calibration search: {result['calibration_seconds']:.0f} s; everything: {result['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
