"""What a user would do by hand vs the converged reference, on held-out seeds (embedded model).

One process, the embedded model with its own guidance, `--images` held-out images (seeds 777000..):
PLMS 50 full (the study default), UniPC and DPM-Solver++ 2M at 5/7/10 steps, DeepCache uniform
N=2..10 and non-uniform N=5/8 (branch 0, PLMS 50 = 51 calls), and hand-placed forecasting schedules
(full calls at round(n·(i/k)^0.6), forecast reuse order 2) on PLMS 50 and UniPC 25. Scored by
`datosearch.studies.heldout.score_heldout`; writes bench/results/compare-embedded.{json,md}.

    python bench/compare_embedded.py                 # 200 images (~15-25 min on 2 CPU cores)
    python bench/compare_embedded.py --images 100
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
from datosearch.space.placement import deepcache_nonuniform, from_full_calls, power_law
from datosearch.space.schedule import REUSE, Schedule
from datosearch.studies.build import default_guidance
from datosearch.studies.heldout import (FID_MARGIN, PSNR_MARGIN_DB, SPEED_TOLERANCE, beaten_anchors,
                                        converged_reference, score_heldout)
from datosearch.studies.protocol import HeldoutProtocol
from heldout_setup import on

RESULTS = Path(__file__).parent / "results"
PLMS_STEPS, PLMS_CALLS = 50, 51
FORECAST_GAMMA, FORECAST_ORDER = 0.6, 2


def forecast_schedule(n_calls: int, k: int) -> Schedule:
    """k full calls at round(n·(i/k)^0.6), every other call a reuse that forecasts (order 2)."""
    return from_full_calls(n_calls, power_law(n_calls, k, FORECAST_GAMMA), REUSE).with_forecast(FORECAST_ORDER)


def compared() -> list[tuple[str, Schedule | None]]:
    rows: list[tuple[str, Schedule | None]] = [("PLMS 50 full", None)]
    for label, name in (("UniPC", "unipc"), ("DPM-Solver++ 2M", "dpmpp2m")):
        rows += [(f"{label} {n}", on(Schedule.full(n), name, n)) for n in (5, 7, 10)]
    rows += [(f"DeepCache N={n}", Schedule.deepcache(PLMS_CALLS, n, 0)) for n in range(2, 11)]
    rows += [(f"DeepCache non-uniform N={n}", deepcache_nonuniform(PLMS_CALLS, PLMS_STEPS, n, 0)) for n in (5, 8)]
    rows += [(f"forecast PLMS 50, {k} full", forecast_schedule(PLMS_CALLS, k)) for k in (10, 7, 5)]
    rows += [(f"forecast UniPC 25, {k} full", on(forecast_schedule(25, k), "unipc", 25))
             for k in (10, 7, 5)]
    return rows


def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    conv = meta["converged"]
    lines = [f"# Hand-made acceleration vs the converged reference (embedded model, held-out seeds)", "",
             f"Hardware: {meta['device']}; torch {meta['torch']}. {meta['images']} held-out images (ten digit "
             f"prompts, seeds {meta['seeds'][0]}..{meta['seeds'][1]}), guidance {meta['guidance']}. "
             f"Converged reference: {conv['scheduler']} {conv['steps']} steps ({conv['steps']} vs "
             f"{conv['check']['steps'][1]} steps on {conv['check']['images']} images: "
             f"{conv['check']['psnr_db']:.1f} dB). Speedup: end-to-end, vs PLMS 50 full compute, median over "
             f"{meta['repeats']} round-robin rounds of {meta['latency_images']} images each of the ratio to the "
             f"full-compute runs bracketing the round (range in brackets). FID-proxy: embedded-digits "
             f"features vs {meta['real_digits']} real held-out digits. Total runtime {meta['runtime_s'] / 60:.1f} min.",
             "", "| schedule | U-Net calls (computed) | full/shallow/reuse/forecast | PSNR vs converged | "
             "PSNR vs PLMS-50 full | FID-proxy vs real | adherence | speedup vs PLMS 50 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['unet_calls']} ({r['unet_computed']}) | "
                     f"{r['full']}/{r['shallow']}/{r['reuse']}/{r['forecast']} | {r['psnr_converged']:.1f} | "
                     f"{r['psnr_fullcompute']:.1f} | {fmt(r['fid_real'], '.1f')} | {r['adherence']:.3f} | "
                     f"{r['speedup_vs_fullcompute']:.2f}x ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}) |")
    lines += ["", f"Dominance (speed ≥ {SPEED_TOLERANCE}x the other's and PSNR vs converged ≥ +{PSNR_MARGIN_DB} dB "
              f"or FID-proxy ≥ {FID_MARGIN:.0%} lower), against the DeepCache and full-compute rows:", ""]
    for r in rows:
        if r["beats"]:
            lines.append(f"- {r['name']} beats {', '.join(r['beats'])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (median)")
    parser.add_argument("--latency-images", type=int, default=4, help="images per timed generation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default="studies/heldout-cache", help="reference images cache")
    parser.add_argument("--out", default=str(RESULTS / "compare-embedded"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pipe = models.load("embedded")
    pipe.set_progress_bar_config(disable=True)
    guidance = default_guidance(pipe)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    protocol = HeldoutProtocol(args.images)
    prompts, seeds = protocol.prompts, protocol.seeds
    log("converged reference")
    conv = converged_reference(pipe, prompts, seeds, guidance=guidance, cache_dir=args.cache_dir)
    log(f"convergence check: {conv.describe()['check']}")
    names, schedules = zip(*compared())
    rows = score_heldout(pipe, list(schedules), args.images, names=list(names), steps=PLMS_STEPS, guidance=guidance,
                         cache_dir=args.cache_dir, converged=conv, repeats=args.repeats,
                         latency_images=args.latency_images, log=log)
    anchors = [r for r in rows if r["name"].startswith(("DeepCache", "PLMS"))]
    for r in rows:
        r["beats"] = beaten_anchors(r, anchors)
    meta = {"device": device_name(pipe.device), "torch": torch.__version__, "images": args.images,
            "seeds": [seeds[0], seeds[-1]], "guidance": guidance, "converged": conv.describe(),
            "repeats": args.repeats, "latency_images": args.latency_images, "real_digits": len(protocol.real_images()),
            "runtime_s": time.perf_counter() - start}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = markdown(rows, meta)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
