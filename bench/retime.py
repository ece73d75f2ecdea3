"""Mapping a schedule to other schedulers and step counts: what the mapping keeps (embedded model).

    PYTHONPATH=src python bench/retime.py [--images 40]

Plans made for PLMS at 50 steps (51 U-Net calls) run on other trajectories through `datosearch.apply`,
which maps them by normalized time. For each target trajectory, PSNR against full compute of that same
trajectory (held-out images, `studies.protocol.HeldoutProtocol`: seeds 777000+, one generator per image)
for: the plan mapped; the same family built for the target's call count (`native`: DeepCache uniform N,
what a new search would start from); for the non-uniform DaTo plan, its first calls taken as they are
(`cut`: what running it unmapped by call index would do). Writes bench/results/retime.{json,md}.
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
from datosearch.objectives import device_name, paired_metrics
from datosearch.space import Schedule
from datosearch.space.retime import to_calls
from datosearch.space.trajectory import Trajectory, named
from datosearch.studies.protocol import HeldoutProtocol

RESULTS = Path(__file__).parent / "results"
SOURCE_CALLS = 51  # PLMS, 50 steps
TARGETS = [("ddim", 20), ("dpmpp-2m", 25), ("euler", 30), ("pndm-plms", 10), ("unipc", 10)]


def plans() -> dict[str, tuple[Schedule, int | None]]:
    """name -> (plan for 51 calls, DeepCache interval of its native counterpart or None)."""
    return {"DeepCache N=3 b0": (Schedule.deepcache(SOURCE_CALLS, 3), 3),
            "DeepCache N=5 b0, forecast 2": (Schedule.deepcache(SOURCE_CALLS, 5).with_forecast(2), 5),
            "DaTo COCO (5 full), forecast 1": (Schedule.dato_coco(ratio=0).with_forecast(1), None)}


def images(pipe, schedule: Schedule | None, protocol: HeldoutProtocol, trajectory: Trajectory,
           keep: str = "schedule") -> torch.Tensor:
    """Held-out images on `trajectory` with `schedule` applied as a user would (`apply(..., trajectory=keep)`,
    mapped to its call count)."""
    handle = datosearch.apply(pipe, schedule, trajectory=keep) if schedule is not None else None
    try:
        return protocol.generate(pipe, trajectory)
    finally:
        if handle is not None:
            handle.remove()


def psnr(pipe, schedule: Schedule, protocol: HeldoutProtocol, trajectory: Trajectory, reference: torch.Tensor) -> float:
    return round(paired_metrics(images(pipe, schedule, protocol, trajectory), reference)["psnr"], 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    logging.getLogger("datosearch").setLevel(logging.ERROR)  # the mapping's one line per trajectory
    pipe = load("embedded")
    protocol = HeldoutProtocol(args.images)
    rows = []
    start = time.perf_counter()
    for name, steps in TARGETS:
        trajectory = named(name, steps)
        m = trajectory.calls(pipe.scheduler.config)
        reference = images(pipe, None, protocol, trajectory)
        for plan_name, (plan, interval) in plans().items():
            row = {"target": f"{name} {steps}", "calls": m, "plan": plan_name, "full": to_calls(plan, m).counts()["full"],
                   "mapped": psnr(pipe, plan, protocol, trajectory, reference)}
            if interval is not None:
                native = Schedule.deepcache(m, interval)
                native = native.with_forecast(2) if plan.forecast else native
                row |= {"native": psnr(pipe, native, protocol, trajectory, reference),
                        "native_full": native.counts()["full"]}
            elif m <= SOURCE_CALLS:  # a uniform plan's first calls are its native plan: only for the others
                cut = Schedule(plan.cache[:m], forecast={c: f for c, f in plan.forecast.items() if c < m})
                row |= {"cut": psnr(pipe, cut, protocol, trajectory, reference), "cut_full": cut.counts()["full"]}
            rows.append(row)
            print(row, flush=True)
    result = {"device": device_name(torch.device("cpu")), "images": args.images, "seed": protocol.seed0,
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
