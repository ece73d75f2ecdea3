"""Accelerator benchmark: full compute vs DeepCache (pip) vs tomesd (pip) vs our schedules, side by side.

One process, one SD1.5-shaped pipeline (random weights run at the real model's speed), the same
prompt and seed for every row. Rows are timed round-robin (after a warm-up generation, `--repeats`
rounds) so background load spreads evenly; each row reports the median. Also times one U-Net call
at 64x64 latents (512px token counts) with and without 0.5 pruning on the highest-resolution blocks.

    python bench/accelerator.py                      # CPU, 256px, no CFG (batch 1)
    python bench/accelerator.py --device cuda --fp16 --size 512 --guidance 7.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

import datosearch
from datosearch.models.tiny import sd15_pipeline
from datosearch.objectives import device_name
from datosearch.space import Schedule, highest_resolution_blocks

RESULTS = Path(__file__).parent / "results"


def timer(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def rows(pipe: Any, steps: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """name -> (enable, disable) for every compared configuration."""
    from DeepCache import DeepCacheSDHelper
    import tomesd

    n_calls = steps + 1  # PNDM/PLMS

    def ours(schedule: Schedule):
        return (lambda: datosearch.apply(pipe, schedule), lambda: datosearch.remove(pipe))

    def deepcache(n: int):
        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=n, cache_branch_id=0)
        return helper.enable, helper.disable

    table = {
        "full compute": (lambda: None, lambda: None),
        "DeepCache pip N=3": deepcache(3),
        "DeepCache pip N=5": deepcache(5),
        "tomesd pip r=0.5": (lambda: tomesd.apply_patch(pipe, ratio=0.5), lambda: tomesd.remove_patch(pipe)),
        "ours DeepCache N=3": ours(Schedule.deepcache(n_calls, 3, 0)),
        "ours DeepCache N=5": ours(Schedule.deepcache(n_calls, 5, 0)),
    }
    if n_calls == 51:  # DaTo's published plan is for 50 PLMS steps
        table["ours DaTo COCO r=0.4"] = ours(Schedule.dato_coco(pipe.unet, 0.4))
    return table


def bench_pipeline(pipe: Any, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    configs = rows(pipe, args.steps)

    def generate(steps: int = args.steps):
        g = torch.Generator(device="cpu").manual_seed(0)
        return pipe(["a photograph of an astronaut riding a horse"] * args.batch, height=args.size, width=args.size,
                    num_inference_steps=steps, guidance_scale=args.guidance, generator=g,
                    output_type="latent").images

    times: dict[str, list[float]] = {name: [] for name in configs}
    outputs: dict[str, torch.Tensor] = {}
    for name, (enable, disable) in configs.items() if args.warmup_all else []:
        enable()
        timer(device, generate)
        disable()
    print(f"warm-up {timer(device, lambda: generate(args.warmup_steps))[0]:.2f} s", flush=True)
    for round_ in range(1, 1 + args.repeats):
        for name, (enable, disable) in configs.items():
            enable()
            try:
                seconds, out = timer(device, generate)
            finally:
                disable()
            times[name].append(seconds)
            outputs[name] = out.float().cpu()
            print(f"round {round_} {name:24s} {seconds:8.2f} s", flush=True)
    base = statistics.median(times["full compute"])
    return [{"config": name, "median_s": statistics.median(t), "times_s": t,
             "speedup": base / statistics.median(t),
             "mean_abs_diff": (outputs[name] - outputs["full compute"]).abs().mean().item()}
            for name, t in times.items()]


def bench_pruning_64(pipe: Any, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """One U-Net call at 64x64 latents (4096 tokens at the top), with and without 0.5 pruning."""
    unet = pipe.unet
    x = torch.randn(2 if args.guidance > 1 else 1, 4, 64, 64, device=device, dtype=dtype)
    ctx = torch.randn(x.shape[0], 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    sched = Schedule.constant_ratio(1, highest_resolution_blocks(unet), 0.5)
    result: dict[str, list[float]] = {"no pruning": [], "r=0.5 top blocks": []}
    with torch.no_grad():
        for round_ in range(1 + args.repeats):
            for name in result:
                handle = datosearch.apply(unet, sched) if name != "no pruning" else None
                seconds, _ = timer(device, lambda: unet(x, 500, encoder_hidden_states=ctx))
                if handle is not None:
                    handle.remove()
                if round_ > 0:
                    result[name].append(seconds)
    medians = {k: statistics.median(v) for k, v in result.items()}
    return {"medians_s": medians, "times_s": result, "speedup": medians["no pruning"] / medians["r=0.5 top blocks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (latents are size/8)")
    parser.add_argument("--steps", type=int, default=50, help="PNDM steps (U-Net calls = steps + 1)")
    parser.add_argument("--guidance", type=float, default=1.0, help="CFG scale; > 1 doubles the U-Net batch")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps of the full-compute warm-up generation")
    parser.add_argument("--warmup-all", action="store_true", help="also warm up every row once (GPU: compile caches)")
    parser.add_argument("--skip-64", action="store_true", help="skip the 64x64 pruning check")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if args.fp16 else torch.float32
    pipe = sd15_pipeline(dtype=dtype).to(device)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; {args}", flush=True)
    table = bench_pipeline(pipe, args, device)
    prune64 = None if args.skip_64 else bench_pruning_64(pipe, args, device, dtype)

    lines = [f"# Accelerator benchmark on {name}", "",
             f"SD1.5-shaped pipeline (random weights), {args.size}px, PNDM {args.steps} steps "
             f"({args.steps + 1} U-Net calls), guidance {args.guidance}, batch {args.batch}, "
             f"{'fp16' if args.fp16 else 'fp32'}, torch {torch.__version__}. Denoising loop timed "
             f"(output_type='latent'); median of {args.repeats} interleaved rounds after a warm-up generation.", "",
             "| config | median s | speedup | mean abs diff to full (latents) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['config']} | {r['median_s']:.3f} | {r['speedup']:.2f}x | {r['mean_abs_diff']:.4f} |" for r in table]
    if prune64:
        m = prune64["medians_s"]
        lines += ["", "One U-Net call at 64x64 latents (4096 top-level tokens):", "",
                  "| config | median s |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in m.items()]
        lines += ["", f"pruning speedup at 4096 tokens: {prune64['speedup']:.3f}x"]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    stem = f"accelerator_{args.device.split(':')[0]}"
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"device": name, "args": vars(args), "rows": table,
                                                     "pruning_64": prune64}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
