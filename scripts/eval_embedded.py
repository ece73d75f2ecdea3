"""Evaluate the shipped embedded model: timing, prompt adherence, FID-proxy, caching trade-off.

    PYTHONPATH=src python scripts/eval_embedded.py --tradeoff --out eval.json

The trade-off part needs the accelerator (`datosearch.dato`, `datosearch.space`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from datosearch import models
from datosearch.models import digits as dg


def digit_prompts(per_digit: int) -> tuple[list[str], list[int]]:
    labels = [d for d in range(10) for _ in range(per_digit)]
    return [dg.digit_prompt(d) for d in labels], labels


def generate(pipe, prompts: list[str], steps: int, seed: int, guidance: float | None = None,
             batch: int = 200) -> torch.Tensor:
    """Images (N, 1, 32, 32) in [0, 1]; batch b uses generator seed `seed + b`."""
    out = []
    for i in range(0, len(prompts), batch):
        gen = torch.Generator().manual_seed(seed + i // batch)
        out.append(pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance,
                        generator=gen, output_type="pt").images)
    return torch.cat(out)


def evaluate(pipe, per_digit: int, steps: int, seed: int, guidance: float | None, real: torch.Tensor) -> dict:
    prompts, labels = digit_prompts(per_digit)
    start = time.perf_counter()
    images = generate(pipe, prompts, steps, seed, guidance)
    generation = time.perf_counter() - start
    adherence, fid = dg.prompt_adherence(images, labels), dg.fid_proxy(images, real)
    return {"images": len(images), "steps": steps, "seconds": round(time.perf_counter() - start, 2),
            "generation_seconds": round(generation, 2), "adherence": round(adherence, 4),
            "fid_proxy": round(fid, 3), "_images": images}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-digit", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--guidance", type=float, nargs="*", default=[None], help="guidance scales to compare")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--tradeoff", action="store_true", help="full vs DeepCache N=2,5,10 vs reuse after call 5")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = models.load("embedded", dtype=getattr(torch, args.dtype))
    real, _ = dg.heldout_digits()
    report = {"threads": args.threads, "dtype": args.dtype, "shipped_guidance": pipe.config.guidance_scale,
              "runs": {}}
    for g in args.guidance:
        res = evaluate(pipe, args.per_digit, args.steps, args.seed, g, real)
        res.pop("_images")
        report["runs"][f"guidance={g if g is not None else pipe.config.guidance_scale}"] = res
        print(json.dumps(res), flush=True)
    if args.tradeoff:
        from datosearch import dato
        from datosearch.space import Schedule

        pipe.scheduler.set_timesteps(args.steps)
        n_calls = len(pipe.scheduler.timesteps)
        schedules = {"full": Schedule.full(n_calls)}
        for n in (2, 5, 10):
            schedules[f"deepcache-N{n}"] = Schedule.deepcache(n_calls, interval=n, branch=0)
        schedules["reuse-after-5"] = Schedule(cache=["full"] * 5 + ["reuse"] * (n_calls - 5))
        prompts, labels = digit_prompts(args.per_digit)
        full_images = None
        report["tradeoff"] = {}
        for name, sched in schedules.items():
            handle = dato.apply(pipe, sched)
            try:
                start = time.perf_counter()
                images = generate(pipe, prompts, args.steps, args.seed)
                seconds = time.perf_counter() - start
            finally:
                handle.remove()
            full_images = images if full_images is None else full_images
            res = {"seconds": round(seconds, 2), "adherence": round(dg.prompt_adherence(images, labels), 4),
                   "fid_proxy_vs_real": round(dg.fid_proxy(images, real), 3),
                   "fid_proxy_vs_full": round(dg.fid_proxy(images, full_images), 3)}
            report["tradeoff"][name] = res
            print(name, json.dumps(res), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
