"""NSGA-II vs random search at an equal trial budget, and the framework's overhead per trial.

    PYTHONPATH=src python bench/search.py [--model embedded|tiny] [--trials 48] [--seeds 0,1]

Every study (sampler × seed) runs on one shared pipeline and evaluator (same reference images,
same baseline latency), in its own SQLite file, with the anchor schedules enqueued first, as
`datosearch run` does. Hypervolume after every `--every` trials uses one reference point for all
studies (the worst anchor value per objective over all studies, + 10 %). Overhead = time of a
trial outside `Evaluator.evaluate` (ask, sampling, dedup lookup, attribute writes, tell), as a
share of the trial's time. Prints tables and writes `bench/results/search-<model>.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from datosearch.search.anchors import anchor_schedules
from datosearch.search.pareto import as_minimised, feasible_complete, hypervolume, reference_point
from datosearch.search.runner import TrialRecord, run_until
from datosearch.space.encoding import EncodingConfig
from datosearch.studies import build, study as studies
from datosearch.studies.resolve import resolve


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--trials", type=int, default=48)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--samplers", default="nsga2,random")
    p.add_argument("--every", type=int, default=8)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--latency-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/search-<model>.json)")
    return p.parse_args()


def hv_history(study: optuna.Study, ref: tuple[float, ...], every: int) -> list[float]:
    """Hypervolume of the feasible completed trials among the first k·`every` trials."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    out = []
    for k in range(every, len(trials) + 1, every):
        pts = [as_minimised(t.values, study.directions) for t in feasible_complete(trials[:k])]
        out.append(hypervolume(pts, ref))
    return out


def main() -> int:
    args = parse()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opts = dict(model=args.model, images=args.images, steps=args.steps, latency_repeats=args.latency_repeats,
                latency_warmup=1, population=args.population, device="cpu")
    config, pipe = resolve(opts)
    tmp = Path(tempfile.mkdtemp(prefix="datosearch-bench-"))
    evaluator = build.build_evaluator(pipe, config, tmp / "cache", "cpu")
    evaluator.prepare()
    anchors = anchor_schedules(pipe.unet, config.encoding["n_calls"])
    print(f"model {config.model}, {config.encoding['n_calls']} U-Net calls, {len(config.prompts)} images, "
          f"{args.trials} trials per study, device {config.device}", file=sys.stderr)
    runs: dict[tuple[str, int], tuple[optuna.Study, list[TrialRecord], float]] = {}
    for sampler in args.samplers.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = type(config)(**{**config.to_json(), "sampler": sampler, "sampler_seed": seed})
            study = studies.create(f"sqlite:///{tmp}/{sampler}-{seed}.db", f"{sampler}-{seed}", cfg, anchors)
            start = time.perf_counter()
            records = run_until(study, evaluator, EncodingConfig(**cfg.encoding), args.trials)
            runs[(sampler, seed)] = (study, records, time.perf_counter() - start)
            print(f"  {sampler} seed {seed}: {len(records)} trials in {runs[(sampler, seed)][2]:.0f} s", file=sys.stderr)
    all_trials = [t for study, _, _ in runs.values() for t in study.get_trials(deepcopy=False)]
    directions = next(iter(runs.values()))[0].directions
    ref = reference_point(all_trials, directions)
    checkpoints = list(range(args.every, args.trials + 1, args.every))
    rows = []
    for (sampler, seed), (study, records, wall) in runs.items():
        evaluated = [r for r in records if r.dedup_of is None]
        overhead = [(r.total_s - r.model_s) / r.total_s for r in evaluated if r.total_s > 0]
        rows.append({"sampler": sampler, "seed": seed, "hypervolume": hv_history(study, ref, args.every),
                     "pareto_size": len(study.best_trials), "wall_s": wall,
                     "dedup_trials": sum(r.dedup_of is not None for r in records),
                     "failed_trials": sum(r.state.name == "FAIL" for r in records),
                     "mean_trial_s": statistics.mean(r.total_s for r in records),
                     "overhead_share_median": statistics.median(overhead),
                     "overhead_share_total": sum(r.total_s - r.model_s for r in records) / sum(r.total_s for r in records),
                     "overhead_s_median": statistics.median(r.total_s - r.model_s for r in records)})
    print(f"\nHypervolume after k trials (reference {tuple(round(r, 6) for r in ref)}; objectives {config.objectives})")
    print(f"{'sampler':>8} {'seed':>4} " + " ".join(f"{k:>9}" for k in checkpoints))
    for row in rows:
        print(f"{row['sampler']:>8} {row['seed']:>4} " + " ".join(f"{v:9.4g}" for v in row["hypervolume"]))
    for sampler in args.samplers.split(","):
        mine = [r["hypervolume"] for r in rows if r["sampler"] == sampler]
        print(f"{sampler:>8} {'mean':>4} " + " ".join(f"{statistics.mean(col):9.4g}" for col in zip(*mine)))
    print(f"\n{'sampler':>8} {'seed':>4} {'trial s':>8} {'overhead':>9} {'overhead s':>10} {'pareto':>6} {'dups':>5}")
    for row in rows:
        print(f"{row['sampler']:>8} {row['seed']:>4} {row['mean_trial_s']:8.2f} {row['overhead_share_total']:9.2%} "
              f"{row['overhead_s_median']:10.3f} {row['pareto_size']:6d} {row['dedup_trials']:5d}")
    out = Path(args.out or Path(__file__).parent / "results" / f"search-{config.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config.to_json(), "trials": args.trials, "every": args.every,
                               "reference_point": ref, "runs": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
