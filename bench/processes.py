"""Generating in worker processes against torch threads, side by side (`datosearch.search.processes`).

The calibration batch of the default study (24 images, one pipeline call) under schedules of the kinds a
study evaluates: fewer steps, the refined members' forecasting plans, DeepCache, full compute. Each
round times every schedule both ways, alternating which goes first; the table gives medians after a
warm-up round, the ratio per schedule, and whether the two ways gave bit-identical images.

    PYTHONPATH=src python bench/processes.py                 # embedded model, all cores, 7 rounds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from datosearch.objectives import device_name, generation_threads
from datosearch.search import processes
from datosearch.search.evaluator import Calibration, Evaluator
from datosearch.space.schedule import FULL, Schedule
from datosearch.space.trajectory import Trajectory
from datosearch.studies.build import default_guidance, default_prompts, default_resolution, load_pipeline
from datosearch.studies import refine

RESULTS = Path(__file__).parent / "results"
DPM = "DPMSolverMultistepScheduler"


def schedules(top: int) -> list[Schedule | None]:
    fewer = [Schedule([FULL] * n, trajectory=Trajectory(DPM, n), meta={"name": f"DPM-Solver++ {n} steps"})
             for n in (8, 12, 20)]
    refined = [refine.cached_plan(refine.start(k), k, top).with_meta(name=f"refined start, {k} full") for k in (5, 7, 10)]
    return [None, *fewer, *refined, Schedule.deepcache(51, 3, 0).with_meta(name="DeepCache N=3 (PLMS 50)")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(RESULTS / "processes-embedded"))
    args = ap.parse_args()
    pipe, _ = load_pipeline(args.model)
    size = default_resolution(pipe)
    prompts, seeds = default_prompts(args.images)
    calib = Calibration(prompts, seeds, 50, default_guidance(pipe), size, size, batch_size=args.images)
    ev = Evaluator(pipe, calib, [], reference=torch.zeros(1), fid=lambda _: 0.0, measure_latency=lambda _: 0.0)
    threads = generation_threads()
    torch.set_num_threads(threads)
    cases = schedules(pipe.scheduler.config["num_train_timesteps"])
    times: dict[int, dict[bool, list[float]]] = {i: {False: [], True: []} for i in range(len(cases))}
    same: dict[int, bool] = {}
    for r in range(args.rounds + 1):  # round 0 warms up
        for i, schedule in enumerate(cases):
            images = {}
            for split in ((False, True) if (r + i) % 2 == 0 else (True, False)):
                processes.enable(split)
                start = time.perf_counter()
                images[split] = ev.images(schedule)
                if r:
                    times[i][split].append(time.perf_counter() - start)
            same[i] = same.get(i, True) and torch.equal(images[False], images[True])
        print(f"round {r}/{args.rounds}", flush=True)
    processes.enable(False)
    rows = []
    for i, schedule in enumerate(cases):
        t, p = statistics.median(times[i][False]), statistics.median(times[i][True])
        rows.append({"schedule": "full compute (PLMS 50)" if schedule is None else schedule.meta["name"],
                     "threads_s": t, "processes_s": p, "ratio": t / p, "identical": same[i]})
    total = sum(r["threads_s"] for r in rows) / sum(r["processes_s"] for r in rows)
    result = {"hardware": device_name("cpu"), "torch_threads": threads, "images": args.images, "rounds": args.rounds,
              "model": args.model, "date": time.strftime("%Y-%m-%d"), "rows": rows, "ratio_of_sums": total}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Generation in {threads} processes of 1 thread against 1 process of {threads} threads",
             "", f"{result['hardware']}; {args.model} model, {args.images} images in one batch, median of "
             f"{args.rounds} interleaved rounds after a warm-up round; {result['date']}.", "",
             "| schedule | threads (s) | processes (s) | ratio | bit-identical |", "|---|---|---|---|---|"]
    lines += [f"| {r['schedule']} | {r['threads_s']:.3f} | {r['processes_s']:.3f} | {r['ratio']:.2f}x | "
              f"{'yes' if r['identical'] else 'no'} |" for r in rows]
    lines += ["", f"All schedules together: {total:.2f}x."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
