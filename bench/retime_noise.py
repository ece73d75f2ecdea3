"""Plans searched on warped timesteps, run at other steps: mapped by noise level against normalized time.

    PYTHONPATH=src python bench/retime_noise.py [--images 100]

The plans are those `bench/tuned_ceiling.py` chose on calibration images (DPM-Solver++ at warped
timesteps, K full calls, forecast reuse; read from bench/results/tuned-ceiling.json) and DeepCache N=2
on DPM-Solver++ 16 at DESIGN §11's warp (0.9, 1.7). Each runs as a user would run it at another step
count: DPM-Solver++ 2M at 20 and 30 default-spaced steps (`apply(pipe, s)`, `num_inference_steps` only)
and PLMS 50 (`apply(pipe, s, trajectory="pipeline")`), mapped by noise level (`retime.NoiseClock`, what
`apply` does) and by plain normalized time (what it did before). PSNR (dB) against full compute of the
target trajectory on held-out images (seeds 777000+). Writes bench/results/retime-noise.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch

from datosearch.models import load
from datosearch.objectives import device_name, paired_metrics
from datosearch.space import Schedule
from datosearch.space.trajectory import Trajectory, named, warp_timesteps
from datosearch.studies.protocol import HeldoutProtocol
from retime import images as retimed_images

RESULTS = Path(__file__).parent / "results"
DATO_APPLY = importlib.import_module("datosearch.dato.apply")  # the module (`datosearch.dato.apply` is the function)
DPM = "DPMSolverMultistepScheduler"
TARGETS = [("dpmpp-2m", 20, "schedule"), ("dpmpp-2m", 30, "schedule"), ("pndm-plms", 50, "pipeline")]


def plans() -> dict[str, Schedule]:
    ceiling = json.loads((RESULTS / "tuned-ceiling.json").read_text())
    out = {row["cached_label"]: Schedule.from_dict(row["cached"]) for row in ceiling["rows"]}
    warped = Trajectory(DPM, 16, timesteps=warp_timesteps(16, 0.9, 1.7, 1000))
    out["DPM-Solver++ 16 warped, DeepCache N=2 b0"] = Schedule(Schedule.deepcache(16, 2).cache, trajectory=warped)
    return out


def images(pipe, protocol: HeldoutProtocol, target: Trajectory, schedule: Schedule | None = None,
           keep: str = "schedule", by_noise: bool = True) -> torch.Tensor:
    """Held-out images on `target` (default spacing, swapped in over what `apply` swapped in), `schedule`
    applied with `trajectory=keep`, mapped by noise level or (`by_noise` False) by plain normalized time."""
    plain = mock.patch.object(DATO_APPLY, "_plan_timesteps", lambda *a: None) if not by_noise else nullcontext()
    with plain:
        return retimed_images(pipe, schedule, protocol, target, keep)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    logging.getLogger("datosearch").setLevel(logging.ERROR)
    pipe, start = load("embedded"), time.perf_counter()
    protocol, rows = HeldoutProtocol(args.images), []
    for name, steps, keep in TARGETS:
        target = named(name, steps)
        for plan_name, plan in plans().items():
            if keep == "schedule" and plan.trajectory.scheduler != target.scheduler:
                continue
            reference = images(pipe, protocol, target)
            row = {"target": target.label(), "plan": plan_name, "calls": target.calls(pipe.scheduler.config)}
            for how, by_noise in (("noise", True), ("time", False)):
                out = images(pipe, protocol, target, plan, keep, by_noise)
                row[how] = round(paired_metrics(out, reference)["psnr"], 2)
            rows.append(row)
            print(row, flush=True)
    result = {"device": device_name(torch.device("cpu")), "images": args.images, "seed": protocol.seed0,
              "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retime-noise.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "retime-noise.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [f"Plans searched on warped DPM-Solver++ timesteps, run at other steps; embedded model, {result['images']} "
             f"held-out images, PSNR (dB) against full compute of the target trajectory ({result['device']}):", "",
             "| run at | plan | mapped by noise level | by normalized time |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['plan']} | {r['noise']} | {r['time']} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
