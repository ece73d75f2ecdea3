"""Every common diffusers scheduler on the embedded model, built from the shipped scheduler config.

One process, the held-out protocol's images (`studies.protocol.HeldoutProtocol`: seeds 777000+, one
generator per image; `studies.matrix.scheduler_matrix`). Deterministic schedulers: PSNR against a
converged reference (DPM-Solver++ 2M, 100 steps, same prompts and seeds) at 10, 25 and 50 steps.
Stochastic ones (50 steps): prompt adherence and FID-proxy vs the 360 held-out real digits, next to
the deterministic schedulers' spread.
Writes bench/results/schedulers_embedded.{json,md}.

    PYTHONPATH=src python bench/schedulers_embedded.py              # 100 images, about 15 min on 2 cores
    PYTHONPATH=src python bench/schedulers_embedded.py --images 20 --out /tmp/sched
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from datosearch import models
from datosearch.objectives import device_name
from datosearch.space.trajectory import DETERMINISTIC, STOCHASTIC
from datosearch.studies.matrix import scheduler_matrix
from datosearch.studies.protocol import HELDOUT_SEED0

RESULTS = Path(__file__).parent / "results"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    steps = report["steps"]
    ref = report["reference"]
    lines = [
        "# Schedulers on the embedded model",
        "",
        f"{report['hardware']}, torch {report['torch']}, diffusers {report['diffusers']}, float32. "
        f"{report['images']} images (prompts 0..9 in turn), seeds {report['seed']}+ (one generator per image); "
        f"every scheduler is `from_config(pipe.scheduler.config)` of the shipped config. Reference: "
        f"DPM-Solver++ 2M, {ref['steps']} steps, linspace timesteps (adherence {ref['adherence']:.0%}, "
        f"FID-proxy {ref['fid_proxy']}). "
        f"Total {report['seconds']:.0f} s.",
        "",
        "Deterministic: mean per-image PSNR (dB) vs the reference; adherence and FID-proxy vs held-out real "
        f"digits at {steps[-1]} steps.",
        "",
        "| scheduler | " + " | ".join(f"PSNR {n} steps" for n in steps)
        + f" | U-Net calls at {steps[-1]} | adherence | FID-proxy |",
        "|---|" + "---:|" * (len(steps) + 3),
    ]
    for name, row in report["deterministic"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row['psnr'][n]:.1f}" for n in steps)
                     + f" | {row['unet_calls'][steps[-1]]} | {row['adherence']:.0%} | {row['fid_proxy']:.1f} |")
    spread = report.get("deterministic_fid_spread")
    lines += ["", f"Stochastic, {report['stochastic_steps']} steps"
              + (f" (deterministic FID-proxy spread {spread[0]:.1f}..{spread[1]:.1f}):" if spread else ":"), "",
              "| scheduler | U-Net calls | adherence | FID-proxy | PSNR vs reference |", "|---|---:|---:|---:|---:|"]
    for name, row in report["stochastic"].items():
        lines.append(f"| {name} | {row['unet_calls']} | {row['adherence']:.0%} | {row['fid_proxy']:.1f} "
                     f"| {row['psnr_vs_reference']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import diffusers

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100, help="a multiple of 10")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--stochastic-steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=HELDOUT_SEED0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", help="scheduler names to run (default: all)")
    p.add_argument("--out", type=Path, default=RESULTS / "schedulers_embedded", help="path stem for .json/.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = models.load("embedded")
    only = set(args.only) if args.only else None
    start = time.perf_counter()
    report = {"hardware": device_name("cpu"), "torch": torch.__version__, "diffusers": diffusers.__version__,
              "scheduler_config": {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}}
    report.update(scheduler_matrix(
        pipe, images=args.images, steps=args.steps, stochastic_steps=args.stochastic_steps, seed=args.seed,
        deterministic=[n for n in DETERMINISTIC if only is None or n in only],
        stochastic=[n for n in STOCHASTIC if only is None or n in only], log=lambda s: print(s, flush=True)))
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
