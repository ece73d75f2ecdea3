"""Mapping a schedule to other schedulers and step counts: what the mapping keeps (embedded model).

    PYTHONPATH=src python bench/retime.py [--images 40]

Plans made for PLMS at 50 steps (51 U-Net calls) run on other trajectories through `datosearch.apply`,
which maps them by normalized time. For each target trajectory, PSNR against full compute of that same
trajectory (held-out seeds 777000+) for: the plan mapped; the same family built for the target's call
count (`native`: DeepCache uniform N, what a new search would start from); for the non-uniform DaTo
plan, its first calls taken as they are (`cut`: what running it unmapped by call index would do). Writes
bench/results/retime.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

import datosearch
from datosearch.models import load
from datosearch.models.digits import digit_prompt
from datosearch.models.embedded import generate_images
from datosearch.models.schedulers import make_scheduler, scheduler_swapped, unet_calls
from datosearch.objectives import device_name, paired_metrics
from datosearch.space import Schedule
from datosearch.space.retime import to_calls

RESULTS = Path(__file__).parent / "results"
HELDOUT_SEED = 777000
SOURCE_CALLS = 51  # PLMS, 50 steps
TARGETS = [("ddim", 20), ("dpmpp-2m", 25), ("euler", 30), ("pndm-plms", 10), ("unipc", 10)]


def plans() -> dict[str, tuple[Schedule, int | None]]:
    """name -> (plan for 51 calls, DeepCache interval of its native counterpart or None)."""
    return {"DeepCache N=3 b0": (Schedule.deepcache(SOURCE_CALLS, 3), 3),
            "DeepCache N=5 b0, forecast 2": (Schedule.deepcache(SOURCE_CALLS, 5).with_forecast(2), 5),
            "DaTo COCO (5 full), forecast 1": (Schedule.dato_coco(ratio=0).with_forecast(1), None)}


def images(pipe, schedule: Schedule | None, prompts: list[str], steps: int) -> torch.Tensor:
    """Held-out images with `schedule` applied as a user would (mapped to the pipeline's call count)."""
    handle = datosearch.apply(pipe, schedule) if schedule is not None else None
    try:
        return generate_images(pipe, prompts, steps, HELDOUT_SEED)
    finally:
        if handle is not None:
            handle.remove()


def psnr(pipe, schedule: Schedule, prompts: list[str], steps: int, reference: torch.Tensor) -> float:
    return round(paired_metrics(images(pipe, schedule, prompts, steps), reference)["psnr"], 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    logging.getLogger("datosearch").setLevel(logging.ERROR)  # the mapping's one line per trajectory
    pipe = load("embedded")
    prompts = [digit_prompt(i % 10) for i in range(args.images)]
    rows = []
    start = time.perf_counter()
    for name, steps in TARGETS:
        with scheduler_swapped(pipe, make_scheduler(name, pipe.scheduler.config)):
            m = unet_calls(pipe, name, steps)
            reference = images(pipe, None, prompts, steps)
            for plan_name, (plan, interval) in plans().items():
                row = {"target": f"{name} {steps}", "calls": m, "plan": plan_name,
                       "full": to_calls(plan, m).counts()["full"], "mapped": psnr(pipe, plan, prompts, steps, reference)}
                if interval is not None:
                    native = Schedule.deepcache(m, interval)
                    native = native.with_forecast(2) if plan.forecast else native
                    row |= {"native": psnr(pipe, native, prompts, steps, reference), "native_full": native.counts()["full"]}
                elif m <= SOURCE_CALLS:  # a uniform plan's first calls are its native plan: only for the others
                    cut = Schedule(plan.cache[:m], forecast={c: f for c, f in plan.forecast.items() if c < m})
                    row |= {"cut": psnr(pipe, cut, prompts, steps, reference), "cut_full": cut.counts()["full"]}
                rows.append(row)
                print(row, flush=True)
    result = {"device": device_name(torch.device("cpu")), "images": args.images, "seed": HELDOUT_SEED,
              "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retime.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "retime.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [f"Plans made for PLMS 50 (51 calls) on other trajectories, embedded model, {result['images']} held-out "
             f"images, PSNR (dB) against full compute of the target trajectory ({result['device']}):", "",
             "| target | calls | plan | mapped (full calls) | native (full calls) | cut (full calls) |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        native = f"{r['native']} ({r['native_full']})" if "native" in r else "-"
        cut = f"{r['cut']} ({r['cut_full']})" if "cut" in r else "-"
        lines.append(f"| {r['target']} | {r['calls']} | {r['plan']} | {r['mapped']} ({r['full']}) | {native} | {cut} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
