"""Evaluate the shipped embedded model: timing, prompt adherence, FID-proxy, caching trade-off.

    PYTHONPATH=src python scripts/eval_embedded.py --tradeoff --out eval.json --samples docs/embedded_samples.png

Image i of a run has its own generator seeded `--seed + i` (the held-out protocol's rule,
`studies.protocol.HeldoutProtocol`), so it does not depend on the batch it is in. The trade-off part
needs the accelerator (`datosearch.dato`, `datosearch.space`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from datosearch import models
from datosearch.models import digits as dg
from datosearch.models.attention import EmbeddedAttnProcessor
from datosearch.models.digits import digit_prompts
from datosearch.objectives.latency import device_name
from datosearch.search import evaluator
from datosearch.studies.protocol import HeldoutProtocol


def generate(pipe, prompts: list[str], steps: int, seed: int, guidance: float | None = None) -> torch.Tensor:
    """Images (N, 1, 32, 32) in [0, 1] of `prompts` (in this order) with the protocol's seeds from `seed`."""
    calib = HeldoutProtocol(len(prompts), seed).calibration(pipe, steps, guidance)
    return evaluator.generate(pipe, replace(calib, prompts=list(prompts)))


def save_grid(images: torch.Tensor, per_digit: int, path: Path, zoom: int = 2) -> None:
    """A PNG with one row per digit (images ordered digit by digit)."""
    from PIL import Image

    rows = images[:, 0].reshape(10, per_digit, 32, 32).permute(0, 2, 1, 3).reshape(10 * 32, per_digit * 32)
    grid = Image.fromarray((rows * 255).round().to(torch.uint8).numpy())
    grid.resize((grid.width * zoom, grid.height * zoom), Image.NEAREST).save(path)


def reference_fids(real: torch.Tensor, n: int = 200, seed: int = 0) -> dict:
    """FID-proxy vs the held-out digits of n real training digits and of n uniform-noise images."""
    images, _ = dg.load_digit_images()
    train = torch.tensor(json.loads(dg.TRAINING_RECORD.read_text())["split"]["train_indices"])
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]]
    noise = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    return {"real_train_vs_heldout": round(dg.fid_proxy(images[pick], real), 3),
            "uniform_noise_vs_heldout": round(dg.fid_proxy(noise, real), 3)}


def evaluate(pipe, per_digit: int, steps: int, seed: int, guidance: float | None, real: torch.Tensor) -> dict:
    prompts, labels = digit_prompts(per_digit)
    start = time.perf_counter()
    images = generate(pipe, prompts, steps, seed, guidance)
    generation = time.perf_counter() - start
    adherence, fid = dg.prompt_adherence(images, labels), dg.fid_proxy(images, real)
    return {"images": len(images), "steps": steps, "seconds": round(time.perf_counter() - start, 2),
            "generation_seconds": round(generation, 2), "adherence": round(adherence, 4),
            "fid_proxy": round(fid, 3), "_images": images}


PROCESSORS = {"embedded": EmbeddedAttnProcessor, "sdpa": AttnProcessor2_0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-digit", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--guidance", type=float, nargs="*", default=[None], help="guidance scales to compare")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--attention", nargs="+", default=["embedded"], choices=list(PROCESSORS),
                   help="the shipped EmbeddedAttnProcessor and/or diffusers' AttnProcessor2_0, interleaved")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the report keeps the median time")
    p.add_argument("--tradeoff", action="store_true", help="full vs DeepCache N=2,5,10 vs reuse after call 5")
    p.add_argument("--out", type=Path)
    p.add_argument("--samples", type=Path, help="also write a PNG grid of 8 full-compute samples per digit")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = models.load("embedded", dtype=getattr(torch, args.dtype))
    real, _ = dg.heldout_digits()
    report = {"hardware": device_name("cpu"), "torch": torch.__version__, "dtype": args.dtype,
              "shipped_guidance": pipe.config.guidance_scale, "references": reference_fids(real), "runs": {}}
    print(json.dumps(report["references"]), flush=True)
    for _ in range(args.rounds):
        for g in args.guidance:
            for name in args.attention:
                pipe.unet.set_attn_processor(PROCESSORS[name]())
                res = evaluate(pipe, args.per_digit, args.steps, args.seed, g, real)
                res.pop("_images")
                key = f"attention={name} guidance={g if g is not None else pipe.config.guidance_scale}"
                print(key, json.dumps(res), flush=True)
                run = report["runs"].setdefault(key, {"all_seconds": []})
                run["all_seconds"].append(res["seconds"])
                run.update(res, seconds=round(statistics.median(run["all_seconds"]), 2))
                run.pop("generation_seconds")
    pipe.unet.set_attn_processor(EmbeddedAttnProcessor())
    if args.samples:
        prompts, _ = digit_prompts(8)
        save_grid(generate(pipe, prompts, args.steps, args.seed), 8, args.samples)
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
