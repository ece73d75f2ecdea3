"""Latency cost model: calibrate on a small design, then predict held-out schedules and compare.

Timing goes through `Evaluator.latency` (the schedule applied on its base trajectory,
`Schedule.trajectory`, 1 image, warm-up 0 / 1 repeat per call); calibration and evaluation each warm
up first and interleave their schedules round-robin over `--repeats` rounds (median per schedule).

    PYTHONPATH=src python bench/costmodel.py              # embedded model, 1 torch thread
    PYTHONPATH=src python bench/costmodel.py --model tiny
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import torch

from datosearch.objectives import device_name, measure_latency
from datosearch.objectives.costmodel import calibrate, design, fit_model, fit_stats, time_interleaved
from datosearch.search.evaluator import Evaluator
from datosearch.space import Schedule, highest_resolution_blocks, transformer_blocks
from datosearch.space.schedule import FULL, REUSE, PruneConfig
from datosearch.space.trajectory import Trajectory
from datosearch.studies.build import (calibration, default_guidance, default_prompts, default_resolution, load_pipeline,
                                      scheduler_calls)

RESULTS = Path(__file__).parent / "results"
PNDM, UNIPC, DPM = "PNDMScheduler", "UniPCMultistepScheduler", "DPMSolverMultistepScheduler"


def placed(n: int, k: int, power: float, other: Any, trajectory: Trajectory | None = None, **meta: Any) -> Schedule:
    """k full calls at round(n·(i/k)^power), `other` elsewhere."""
    full = {min(n - 1, round(n * (i / k) ** power)) for i in range(k)}
    return Schedule([FULL if t in full else other for t in range(n)], meta=meta, trajectory=trajectory)


def held_out(pipe: Any, n_calls_of: Any, steps: int) -> list[Schedule]:
    """Varied schedules, none of them in the calibration design."""
    n = n_calls_of(PNDM, steps)
    unet = pipe.unet
    blocks = [b.path for b in transformer_blocks(unet)]
    top = highest_resolution_blocks(unet)
    out = [Schedule.full(n).with_meta(name="full compute")]
    out += [Schedule.deepcache(n, k, 0) for k in (2, 3, 5, 6, 8, 10)]
    quad = {0, 5, 9, 13, 17, 21, 26, 31, 37, 43}  # DeepCache non-uniform, k=10 (DESIGN §8)
    out += [Schedule([FULL if t in quad else 0 for t in range(n)], meta={"name": "deepcache-quad-k10-b0"}),
            placed(n, 7, 0.7, 0, name="late-dense-k7-b0"),
            placed(n, 10, 0.6, REUSE, name="reuse-k10"), placed(n, 17, 0.6, REUSE, name="reuse-k17"),
            placed(n, 5, 0.6, REUSE, name="reuse-k5-fc2").with_forecast(2),
            Schedule.deepcache(n, 5, 0).with_forecast(1).with_meta(name="deepcache-N5-b0-fc1"),
            Schedule.deepcache(n, 3, 0).with_forecast(2).with_meta(name="deepcache-N3-b0-fc2"),
            Schedule.deepcache(n, 5, 1), Schedule.deepcache(n, 3, 2), Schedule.deepcache(n, 2, 1),
            Schedule.constant_ratio(n, blocks, 0.5).with_meta(name="prune-all-r0.5"),
            Schedule.constant_ratio(n, top, 0.4).with_meta(name="prune-top-r0.4"),
            Schedule(Schedule.deepcache(n, 3, 2).cache, PruneConfig({b: 0.6 for b in blocks}),
                     {"name": "deepcache-N3-b2-prune-all-r0.6"})]
    if n == 51:
        out.append(Schedule.dato_coco(unet, 0.4))
    for sched in (UNIPC, DPM):
        for k in (5, 7, 10, 25):
            out.append(Schedule([FULL] * n_calls_of(sched, k), meta={"name": f"full-{sched[:5]}-{k}"},
                                trajectory=Trajectory(sched, k)))
    m = n_calls_of(UNIPC, 25)
    out.append(placed(m, 10, 0.6, REUSE, Trajectory(UNIPC, 25), name="UniPC25-reuse-k10-fc2").with_forecast(2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", choices=["embedded", "tiny"])
    parser.add_argument("--steps", type=int, default=50, help="the pipeline's own (PNDM/PLMS) step count")
    parser.add_argument("--calib-steps", type=int, nargs=2, default=[10, 50])
    parser.add_argument("--repeats", type=int, default=5, help="calibration rounds")
    parser.add_argument("--eval-repeats", type=int, default=5, help="rounds for the held-out schedules")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="process", choices=["process", "wall"],
                        help="process CPU seconds (robust on a shared machine, 1 thread) or wall seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pipe, _ = load_pipeline(args.model)
    size = default_resolution(pipe)
    cfg = argparse.Namespace(prompts=default_prompts(1)[0], seeds=[0], steps=args.steps,
                             guidance=default_guidance(pipe), height=size, width=size, batch_size=1)
    evaluator = Evaluator(pipe, calibration(cfg), ["latency"], reference=torch.zeros(1), fid=lambda _: 0.0,
                          measure_latency=lambda run: measure_latency(run, "cpu", 0, 1, args.clock).median_s)

    n_calls_of = functools.partial(scheduler_calls, pipe)
    hardware = device_name("cpu")
    print(f"{args.model} on {hardware}, torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    model = calibrate(evaluator.latency, pipe.unet, n_calls_of, [PNDM, UNIPC, DPM], args.calib_steps,
                      repeats=args.repeats, device=hardware)
    calib_wall = time.perf_counter() - start
    calib_cost = sum(p["measured_s"] for p in model.stats["points"]) * (args.repeats + 1)  # an idle machine's wall
    print(f"calibrated in {calib_wall:.1f} s: R² {model.stats['r2']:.4f}, max rel err "
          f"{model.stats['max_rel_err']:.3f}", flush=True)
    for k, v in model.coefficients.items():
        print(f"  {k:32s} {v * 1e3:9.3f} ms", flush=True)

    # Held-out schedules, timed in the same rounds as a second copy of the calibration design: a model
    # fitted on that copy is compared free of load drift between calibration and evaluation; the model
    # calibrated above is compared on speedups (both sides relative to a baseline of their own rounds).
    schedules = held_out(pipe, n_calls_of, args.steps)
    plan = design(pipe.unet, n_calls_of, model.schedulers, args.calib_steps)
    times = time_interleaved(evaluator.latency, plan + schedules, args.eval_repeats, warmup=1)
    same = fit_model(plan, times[:len(plan)], model.layout, model.schedulers, hardware)
    measured = times[len(plan):]
    predicted = [same.predict(s) for s in schedules]
    early = [model.predict(s) for s in schedules]
    base_m, base_p, base_e = measured[0], predicted[0], early[0]
    sp_m = [base_m / m for m in measured]
    sp_e = [base_e / e for e in early]
    rows = [{"name": s.meta.get("name", "?"), "scheduler": s.trajectory.scheduler if s.trajectory else PNDM,
             "n_calls": s.n_calls, **s.counts(), "measured_s": m, "predicted_s": p, "rel_err": (p - m) / m, "calibrated_s": e,
             "speedup_measured": a, "speedup_calibrated": b}
            for s, m, p, e, a, b in zip(schedules, measured, predicted, early, sp_m, sp_e)]
    result = {"model": args.model, "hardware": hardware, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "clock": args.clock,
              "steps": args.steps, "calibration_wall_s": calib_wall,
              "calibration_timed_s": calib_cost, "cost_model": model.to_dict(),
              "same_rounds_model": same.to_dict(),
              "held_out": {**fit_stats(measured, predicted), "full_predicted_over_measured": base_p / base_m,
                           "eval_repeats": args.eval_repeats},
              "calibrated_model_held_out_seconds": {**fit_stats(measured, early), "full_predicted_over_measured":
                                                    base_e / base_m},
              "calibrated_model_held_out_speedups": fit_stats(sp_m, sp_e),
              "calibrated_model_rescaled_to_baseline": fit_stats(measured, [e * base_m / base_e for e in early]),
              "baseline_none_over_full": model.predict(None, n_calls=n_calls_of(PNDM, args.steps)) / base_e,
              "rows": rows}
    for r in rows:
        print(f"{r['name']:34s} {r['measured_s']:.4f} {r['predicted_s']:.4f} {r['rel_err']:+.3f} "
              f"{r['speedup_measured']:.2f}x {r['speedup_calibrated']:.2f}x", flush=True)
    print(json.dumps({k: v for k, v in result.items() if "held_out" in k}, indent=1))
    write(result, args)


def write(result: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"costmodel-{args.model}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    cm, h = result["cost_model"], result["held_out"]
    st = cm["stats"]
    lines = [f"# Latency cost model, {result['model']} model, on {result['hardware']}", "",
             f"torch {result['torch']}, {result['threads']} torch thread(s), {result['clock']} clock; 1 image per "
             f"generation; the pipeline's "
             f"own scheduler PNDM (PLMS) at {result['steps']} steps is the baseline.", "",
             f"Calibration: {st['n_points']} schedules × {st['repeats']} interleaved rounds (+1 warm-up) in "
             f"{result['calibration_wall_s']:.1f} s wall ({result['calibration_timed_s']:.1f} s of timed generations "
             f"by the {result['clock']} clock); fit R² {st['r2']:.4f}, max rel. error {st['max_rel_err']:.3f}.",
             "", "| feature | coefficient (ms) |", "|---|---:|"]
    lines += [f"| {k} | {v * 1e3:.3f} |" for k, v in cm["coefficients"].items()]
    c, sp = result["calibrated_model_held_out_seconds"], result["calibrated_model_held_out_speedups"]
    lines += ["", f"Held out: {h['n_points']} schedules, timed in the same {h['eval_repeats']} interleaved rounds "
              f"(+1 warm-up) as a second copy of the calibration design. Model fitted on that copy: **R² "
              f"{h['r2']:.4f}**, max rel. error {h['max_rel_err']:.3f}, median {h['median_rel_err']:.3f}; full "
              f"compute predicted/measured {h['full_predicted_over_measured']:.3f}.",
              f"The model calibrated earlier (above), seconds: R² {c['r2']:.4f}, max rel. error "
              f"{c['max_rel_err']:.3f}, median {c['median_rel_err']:.3f} (load drift between the runs); speedups "
              f"vs the baseline of the same rounds: R² {sp['r2']:.4f}, max rel. error {sp['max_rel_err']:.3f}, "
              f"median {sp['median_rel_err']:.3f}; rescaled (`CostModel.scaled`) to the baseline measured in those "
              f"rounds, seconds: R² {result['calibrated_model_rescaled_to_baseline']['r2']:.4f}. Full compute "
              f"predicts exactly 1.00x of itself.",
              "", "| schedule | calls | full | shallow | reuse | forecast | measured s | predicted s | rel. err | "
              "speedup meas. | speedup pred. (calibrated model) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['n_calls']} | {r['full']} | {r['shallow']} | {r['reuse']} | {r['forecast']} | "
              f"{r['measured_s']:.4f} | {r['predicted_s']:.4f} | {r['rel_err']:+.3f} | {r['speedup_measured']:.2f}x | "
              f"{r['speedup_calibrated']:.2f}x |" for r in result["rows"]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
