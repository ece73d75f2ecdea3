"""Samplers and encodings at an equal trial budget: hypervolume over seeds, and the framework's overhead.

    PYTHONPATH=src python bench/search.py [--model embedded|tiny] [--trials 96] [--seeds 0,1,2]
        [--variants structured:nsga2,calls:nsga2,structured:random,structured:tpe] [--heldout 100]

Every study (variant × seed) is built like `datosearch run` builds one (`studies.launch`), on one
shared pipeline, evaluator and cost model (same references, same latency predictions), in its own
SQLite file, anchors and the encoding's first generation enqueued first. A schedule evaluated by one
study is not evaluated again by another (the scores are deterministic given the schedule).
Hypervolume after every `--every` trials uses one reference point for all studies (the worst anchor
value per objective over all studies, + 10 %). Overhead = time of a trial outside `evaluate` (ask,
sampling, dedup lookup, attribute writes, tell), as a share of the trial's time. Then each variant's
front (sampler seed `--heldout-seed`) and the anchors a user would try instead (full compute, DeepCache
uniform / non-uniform, UniPC / DPM-Solver++ / the study's scheduler at ≤ 10 steps) are re-scored on
`--heldout` held-out images in one run (`studies.verify.score_against_anchors`), with the anchors each
front beats there. Prints tables and writes `bench/results/search-<model>.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from datosearch.search.attrs import COSTMODEL_ATTR
from datosearch.search.evaluator import Evaluation
from datosearch.search.pareto import as_minimised, feasible_complete, hypervolume, reference_point
from datosearch.search.runner import TrialRecord, run_until
from datosearch.space.schedule import Schedule
from datosearch.studies.front import pareto_front
from datosearch.studies.launch import open_run
from datosearch.studies.verify import anchor_schedules_of, score_against_anchors


class Memo:
    """One evaluator shared by every study: each distinct schedule is scored once."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator, self.objectives, self.cache = evaluator, evaluator.objectives, {}

    def prepare(self) -> None:
        self.evaluator.prepare()

    def evaluate(self, schedule: Schedule) -> Evaluation:
        key = schedule.key()
        if key not in self.cache:
            self.cache[key] = self.evaluator.evaluate(schedule)
        return self.cache[key]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--trials", type=int, default=96)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="structured:nsga2,calls:nsga2,structured:random,structured:tpe",
                   help="comma list of ENCODING:SAMPLER")
    p.add_argument("--every", type=int, default=8)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--objectives", default="fid,latency",
                   help="the studies' objectives (the stored results compare samplers on fid,latency)")
    p.add_argument("--latency-repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--heldout", type=int, default=100, help="held-out images to re-score the fronts on (0: skip)")
    p.add_argument("--heldout-seed", type=int, default=0, help="the sampler seed whose fronts are re-scored")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/search-<model>.json)")
    p.add_argument("--render", default=None, help="only write the markdown of an earlier results JSON")
    return p.parse_args()


def hv_history(study: optuna.Study, ref: tuple[float, ...], every: int) -> list[float]:
    """Hypervolume of the feasible completed trials among the first k·`every` trials."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    out = []
    for k in range(every, len(trials) + 1, every):
        pts = [as_minimised(t.values, study.directions) for t in feasible_complete(trials[:k])]
        out.append(hypervolume(pts, ref))
    return out


def heldout_fronts(runs: dict[tuple[str, int], Any], seed: int, pipe: Any, config: Any, n_images: int) -> dict[str, Any]:
    """Each variant's front (sampler seed `seed`) and the compared anchors, scored on held-out images in
    one run; per variant, the anchors some schedule of its front beats there."""
    fronts = {variant: pareto_front(study) for (variant, s), (study, _, _) in runs.items() if s == seed}
    named: dict[str, tuple[str, Schedule]] = {}
    for variant, entries in fronts.items():
        for e in entries:
            named.setdefault(e.schedule.key(), (e.anchor or f"{variant}/trial-{e.trial.number}", e.schedule))
    study = next(study for (_, s), (study, _, _) in runs.items() if s == seed)
    scored = score_against_anchors(list(named.values()), anchor_schedules_of(study), pipe, config, n_images,
                                   log=lambda m: print(f"  held-out: {m}", file=sys.stderr))
    by_key = dict(zip(named, scored["front"]))
    scored["variants"] = {variant: {"front": [by_key[e.schedule.key()]["name"] for e in entries],
                                    "beats": sorted({a for e in entries for a in by_key[e.schedule.key()]["beats"]})}
                          for variant, entries in fronts.items()}
    return scored


def markdown(data: dict[str, Any], source: str) -> str:
    """The results JSON as a page: hypervolume per variant and seed, the held-out comparison."""
    cfg, runs = data["config"], data["runs"]
    every = data["every"]
    cols = list(range(every, data["trials"] + 1, every))
    lines = [f"# Samplers and encodings at equal trials ({cfg['model']} model)", "",
             f"Device {cfg.get('device_name', cfg.get('device'))}; {cfg['steps']} steps, {len(cfg['seeds'])} calibration "
             f"images, population {cfg['population']}, objectives {', '.join(cfg['objectives'])}. Hypervolume of the "
             f"feasible trials among the first k (one reference point for all studies: "
             f"{', '.join(f'{r:.4g}' for r in data['reference_point'])}). Raw numbers: `{source}`.", "",
             "| variant | seed | " + " | ".join(str(k) for k in cols) + " | trial s | dup trials |",
             "|---|---|" + "---:|" * (len(cols) + 2)]
    for r in runs:
        lines.append(f"| {r['sampler']} | {r['seed']} | " + " | ".join(f"{v:.4g}" for v in r["hypervolume"]) +
                     f" | {r['mean_trial_s']:.2f} | {r['dedup_trials']} |")
    final = {(r["sampler"], r["seed"]): r["hypervolume"][-1] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    lines += ["", f"Final hypervolume, structured NSGA-II minus each other variant, per seed:", ""]
    for variant in sorted({v for v, _ in final} - {"structured:nsga2"}):
        diffs = [final[("structured:nsga2", s)] - final[(variant, s)] for s in seeds if (variant, s) in final]
        lines.append(f"- {variant}: " + ", ".join(f"{d:+.4g}" for d in diffs))
    held = data.get("heldout")
    if held:
        lines += ["", f"## Fronts on {held['n_images']} held-out images (seed {held['seed0']}+)", "",
                  f"Reference {held['reference']['scheduler']} {held['reference']['steps']} steps. A front beats "
                  f"an anchor when one of its schedules runs at ≥ {held['dominance']['speed']}x the anchor's speed "
                  f"with ≥ +{held['dominance']['psnr_db']} dB PSNR and a FID-proxy at most "
                  f"{held['dominance']['fid_slack']:.0%} higher (or a {held['dominance']['fid_margin']:.0%} lower FID-proxy).", ""]
        anchors = [a["name"] for a in held["anchors"]]
        lines += ["| variant | anchors its front beats | not beaten |", "|---|---|---|"]
        for variant, v in held["variants"].items():
            lines.append(f"| {variant} | {', '.join(v['beats']) or '-'} | "
                         f"{', '.join(a for a in anchors if a not in v['beats']) or '-'} |")
        lines += ["", "| schedule | scheduler | steps | full/reuse/forecast | PSNR vs converged | FID-proxy | speedup | beats |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for row in [*held["front"], *held["anchors"]]:
            fid = "-" if row.get("fid_real") is None else f"{row['fid_real']:.1f}"
            lines.append(f"| {row['name']} | {row['scheduler']} | {row['steps']} | {row['full']}/{row['reuse']}/"
                         f"{row['forecast']} | {row['psnr_converged']:.2f} | {fid} | "
                         f"{row['speedup_vs_fullcompute']:.2f}x | {', '.join(row.get('beats', [])) or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse()
    if args.render:
        data = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(data, Path(args.render).name))
        return 0
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="datosearch-bench-"))
    base = dict(model=args.model, images=args.images, steps=args.steps, latency_repeats=args.latency_repeats,
                population=args.population, device="cpu", objectives=args.objectives.split(","))
    pipe, memo, cost = None, None, None
    runs: dict[tuple[str, int], tuple[optuna.Study, list[TrialRecord], float]] = {}
    for variant in args.variants.split(","):
        encoding, sampler = variant.split(":")
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"{encoding}-{sampler}-{seed}"
            url = f"sqlite:///{tmp}/{name}.db"
            opts = {**base, "encoding_kind": encoding, "sampler": sampler, "sampler_seed": seed}
            # the first study's pipeline, evaluator and cost model serve all (no recalibration)
            run = open_run(url, name, opts, pipe=pipe, evaluator=memo and memo.evaluator, cost_model=cost)
            pipe = run.pipe
            memo = memo or Memo(run.evaluator)
            cost = cost or run.study.user_attrs.get(COSTMODEL_ATTR)
            start = time.perf_counter()
            records = run_until(run.study, memo, run.config.encoding, args.trials)
            runs[(variant, seed)] = (run.study, records, time.perf_counter() - start)
            print(f"  {variant} seed {seed}: {len(records)} trials in {runs[(variant, seed)][2]:.0f} s", file=sys.stderr)
    config = run.config
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
    for sampler in args.variants.split(","):
        mine = [r["hypervolume"] for r in rows if r["sampler"] == sampler]
        print(f"{sampler:>8} {'mean':>4} " + " ".join(f"{statistics.mean(col):9.4g}" for col in zip(*mine)))
    print(f"\n{'sampler':>8} {'seed':>4} {'trial s':>8} {'overhead':>9} {'overhead s':>10} {'pareto':>6} {'dups':>5}")
    for row in rows:
        print(f"{row['sampler']:>8} {row['seed']:>4} {row['mean_trial_s']:8.2f} {row['overhead_share_total']:9.2%} "
              f"{row['overhead_s_median']:10.3f} {row['pareto_size']:6d} {row['dedup_trials']:5d}")
    heldout = heldout_fronts(runs, args.heldout_seed, pipe, config, args.heldout) if args.heldout else None
    if heldout is not None:
        for variant, v in heldout["variants"].items():
            print(f"{variant} (seed {args.heldout_seed}) front beats on held-out: {', '.join(v['beats']) or '-'}")
    out = Path(args.out or Path(__file__).parent / "results" / f"search-{config.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config.to_json(), "trials": args.trials, "every": args.every,
                               "reference_point": ref, "runs": rows, "heldout": heldout}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(json.loads(out.read_text()), out.name))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
