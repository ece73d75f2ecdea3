"""Does evolution earn its keep? The default study per NSGA-II seed, its first generation against its final
front on held-out images (issue 31).

    PYTHONPATH=src python bench/evolution.py [--seeds 0,1,2] [--images 100] [--trials N] [--sampler nsga2] [--at N]
        [--seed0 777000]

Each seed runs `datosearch run --study evo-S --seed S --no-outputs` (the default study, as a user runs it;
`--trials` defaults to the CLI's; `--sampler random|tpe` adds `--sampler` and names the study
`evo-SAMPLER-S`: the same enqueued first generation, then that sampler instead of NSGA-II; `--compare
nsga2,random,tpe` then writes their stored results side by side, `evolution-samplers.md`; an entry SAMPLER:STEM reads the results file STEM, `--out` names the table). Then, per
study: the first generation (the enqueued trials: anchors, refined and seeded members) and its Pareto front, the final Pareto front, and per count K of computed U-Net
calls in `CALLS` the two best trials of each by calibration PSNR are re-scored on `--images` held-out images
(seeds 777000+ or `--seed0`'s, PSNR against the converged reference, `studies.heldout.score_heldout`, one timing round).
Reported per seed: the hypervolume of each front in (held-out PSNR, the study's predicted speed-up) with one
reference point (20 dB, 0.91x), the best held-out PSNR at K calls of the first generation and of the whole
study, and the per-operator table (`search.operators`). Writes bench/results/evolution-embedded.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from datosearch import cli
from datosearch.models import load
from datosearch.objectives import device_name
from datosearch.search.attrs import ANCHOR_ATTR, OPERATOR_ATTR, PAIRED_PREFIX, SPEEDUP_ATTR
from datosearch.search.operators import operator_table
from datosearch.search.pareto import feasible_complete, hypervolume, pareto_trials
from datosearch.studies import study as studies
from datosearch.studies.front import trial_schedule
from datosearch.studies.heldout import HELDOUT_SEED0, score_heldout

RESULTS = Path(__file__).parent / "results"
FIRST = ("anchor", "refined", "seeded")
CALLS = (5, 7, 10)
REFERENCE = (-20.0, 1.1)  # (−PSNR dB, 1 / speed-up), minimised: 20 dB, 1/1.1x


def study_name(sampler: str, seed: int) -> str:
    """The bench's study of `sampler` at `seed`."""
    return f"evo-{seed}" if sampler == "nsga2" else f"evo-{sampler}-{seed}"


def front_hv(points: list[tuple[float, float]]) -> float:
    """Hypervolume of (PSNR dB, speed-up) points against `REFERENCE`."""
    return hypervolume([(-psnr, 1.0 / speed) for psnr, speed in points], REFERENCE)


def computed_calls(trial: optuna.trial.FrozenTrial) -> int:
    counts = trial_schedule(trial).counts()
    return counts["full"] + counts.get("shallow", 0)


def candidates(study: optuna.Study, at: int | None = None) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """The trials to re-score: both fronts, and the two best (calibration PSNR) at each of `CALLS`; with `at`,
    also the front and the best of the study as it stood after its first `at` trials ("at")."""
    done = [t for t in feasible_complete(study.get_trials(deepcopy=False)) if PAIRED_PREFIX + "psnr" in t.user_attrs]
    first = [t for t in done if t.user_attrs.get(OPERATOR_ATTR) in FIRST]
    pools = [("first", first), ("all", done)] + ([("at", [t for t in done if t.number < at])] if at else [])
    out = {f"{label}_front": pareto_trials(pool, study.directions) for label, pool in pools}
    out["final_front"] = out.pop("all_front")
    for k in CALLS:
        for label, pool in pools:
            at_k = sorted((t for t in pool if computed_calls(t) == k), key=lambda t: -t.user_attrs[PAIRED_PREFIX + "psnr"])
            out[f"{label}_{k}"] = at_k[:2]
    return out


def one_seed(seed: int, storage: str, images: int, trials: int | None, pipe: Any, cache: Path,
             sampler: str = "nsga2", at: int | None = None, seed0: int = HELDOUT_SEED0) -> dict[str, Any]:
    name = study_name(sampler, seed)
    argv = ["run", "--study", name, "--storage", storage, "--seed", str(seed), "--no-outputs", "--no-progress"]
    argv += [] if sampler == "nsga2" else ["--sampler", sampler]
    started = time.perf_counter()
    cli.main(argv + (["--trials", str(trials)] if trials else []))
    study_s = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=storage)
    config = studies.stored_config(study)
    groups = candidates(study, at)
    unique = {t.number: t for ts in groups.values() for t in ts}
    numbers = sorted(unique)
    rows = score_heldout(pipe, [trial_schedule(unique[n]) for n in numbers], images, names=[f"trial-{n}" for n in numbers],
                         steps=config.steps, scheduler=config.scheduler, guidance=config.guidance, model=config.model,
                         cache_dir=cache, repeats=1, refine_factor=0, seed0=seed0, log=lambda m: print(f"  {m}", file=sys.stderr))
    psnr = {n: r["psnr_converged"] for n, r in zip(numbers, rows)}
    fid_real = {n: r["fid_real"] for n, r in zip(numbers, rows)}

    def hv(trials: list[optuna.trial.FrozenTrial]) -> float:
        return front_hv([(psnr[t.number], t.user_attrs[SPEEDUP_ATTR]) for t in trials])

    labels = ("first", "all") + (("at",) if at else ())
    best = {f"{label}_{k}": max((psnr[t.number] for t in groups[f"{label}_{k}"]), default=None)
            for k in CALLS for label in labels}
    origin = {n: unique[n].user_attrs.get(OPERATOR_ATTR) for n in numbers}
    return {"seed": seed, "study_s": round(study_s, 1), "trials": len(study.trials),
            "hv_first": hv(groups["first_front"]), "hv_final": hv(groups["final_front"]), "best": best,
            **({"at": at, "hv_at": hv(groups["at_front"])} if at else {}),
            "final_front_operators": sorted(origin[t.number] for t in groups["final_front"]),
            "rows": [{"trial": n, "operator": origin[n], "calls": computed_calls(unique[n]),
                      "speedup_model": unique[n].user_attrs[SPEEDUP_ATTR], "psnr_calibration":
                      unique[n].user_attrs[PAIRED_PREFIX + "psnr"], "psnr_heldout": psnr[n], "fid_real": fid_real[n],
                      "anchor": unique[n].user_attrs.get(ANCHOR_ATTR)} for n in numbers],
            "operators": operator_table(study)}


def markdown(data: dict[str, Any]) -> str:
    sampler = data.get("sampler", "nsga2")
    lines = [f"# Evolution against its first generation (embedded model, {data['images']} held-out images)", "",
             f"{data['device']}. Default study per {sampler} seed (`datosearch run --seed S"
             f"{'' if sampler == 'nsga2' else ' --sampler ' + sampler}`), {data['trials_note']}. "
             "Hypervolume in (held-out PSNR against the converged reference, predicted speed-up), reference "
             f"(20 dB, 0.91x). Best held-out PSNR (dB) at K computed U-Net calls: first generation / whole study.", "",
             "| seed | study min | HV first gen | HV final | " + " | ".join(f"{k} calls" for k in CALLS) + " | final front by operator |",
             "|---|---|---|---|" + "---|" * len(CALLS) + "---|"]
    for r in data["seeds"]:
        cells = []
        for k in CALLS:
            a, b = r["best"][f"first_{k}"], r["best"][f"all_{k}"]
            cells.append("-" if a is None or b is None else f"{a:.2f} / {b:.2f} ({b - a:+.2f})")
        ops = {o: r["final_front_operators"].count(o) for o in sorted(set(r["final_front_operators"]))}
        lines.append(f"| {r['seed']} | {r['study_s'] / 60:.1f} | {r['hv_first']:.3f} | {r['hv_final']:.3f} | "
                     + " | ".join(cells) + " | " + ", ".join(f"{o} {c}" for o, c in ops.items()) + " |")
    for r in (r for r in data["seeds"] if r.get("at")):
        cells = [f"{r['best'][f'at_{k}']:.2f}" if r["best"][f"at_{k}"] is not None else "-" for k in CALLS]
        lines.append(f"- seed {r['seed']} after its first {r['at']} trials: HV {r['hv_at']:.3f}; best held-out PSNR at "
                     + ", ".join(f"{k} calls {c}" for k, c in zip(CALLS, cells)))
    lines += ["", "Per operator (trials / children that dominate a parent / on the study's front):", ""]
    for r in data["seeds"]:
        lines.append(f"- seed {r['seed']}: " + "; ".join(
            f"{o['operator']} {o['trials']}/{'-' if o['beat_parent'] is None else o['beat_parent']}/{o['on_front']}"
            for o in r["operators"]))
    return "\n".join(lines) + "\n"


def results_stem(sampler: str) -> str:
    """The results files' name (without suffix) of `sampler`'s studies under bench/results."""
    return "evolution-embedded" + ("" if sampler == "nsga2" else f"-{sampler}")


def compare(entries: list[str]) -> str:
    """The samplers' stored results side by side (`--compare`, each entry SAMPLER or SAMPLER:STEM, the results
    file's stem): final-front HV and best held-out PSNR per seed."""
    stems = dict(e.split(":", 1) if ":" in e else (e, results_stem(e)) for e in entries)
    samplers = list(stems)
    data = {name: json.loads((RESULTS / f"{stem}.json").read_text()) for name, stem in stems.items()}
    lines = ["# Samplers at equal trials: held-out hypervolume of the final front (embedded model)", "",
             f"{data[samplers[0]]['device']}; {data[samplers[0]]['images']} held-out images; each sampler's study starts "
             "from the same enqueued first generation (`bench/evolution.py --sampler S`). Cells: HV of the final front / "
             "best held-out PSNR at 5, 7, 10 computed U-Net calls / best held-out PSNR anywhere (its predicted speed-up).",
             "", "| seed | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
    for seed in (r["seed"] for r in data[samplers[0]]["seeds"]):
        cells = []
        for name in samplers:
            r = next((run for run in data[name]["seeds"] if run["seed"] == seed), None)
            if r is None:  # that sampler's bench did not run this seed
                cells.append("-")
                continue
            top = max(r["rows"], key=lambda row: row["psnr_heldout"])
            at = " / ".join(f"{r['best'][f'all_{k}']:.2f}" for k in CALLS)
            cells.append(f"{r['hv_final']:.2f} / {at} / {top['psnr_heldout']:.2f} ({top['speedup_model']:.2f}x)")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--trials", type=int, default=None, help="trials per study (default: the CLI's)")
    p.add_argument("--dir", default="studies/evolution", help="where the studies and caches go")
    p.add_argument("--sampler", default="nsga2", choices=["nsga2", "random", "tpe"])
    p.add_argument("--db", default="evolution.db", help="the SQLite file under --dir (one per parallel process)")
    p.add_argument("--compare", help="only write --out (default evolution-samplers).md from stored results, e.g. "
                   "nsga2,random,tpe or nsga2:evolution-embedded-gp,...")
    p.add_argument("--at", type=int, help="also score the study as it stood after its first AT trials")
    p.add_argument("--seed0", type=int, default=HELDOUT_SEED0, help="first held-out seed (a fresh range confirms a "
                   "choice; a study that exists is re-scored, not run again)")
    p.add_argument("--out", help="results file stem under bench/results (default evolution-embedded[-SAMPLER])")
    args = p.parse_args()
    if args.compare:
        (RESULTS / f"{args.out or 'evolution-samplers'}.md").write_text(text := compare(args.compare.split(",")))
        print(text)
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{root.resolve() / args.db}"
    pipe = load("embedded")
    seeds = [one_seed(int(s), storage, args.images, args.trials, pipe, root / "heldout-cache", args.sampler, args.at, args.seed0)
             for s in args.seeds.split(",")]
    data = {"device": device_name(pipe.device), "images": args.images, "seed0": args.seed0, "seeds": seeds, "sampler": args.sampler,
            "trials_note": f"{args.trials or cli.DEFAULT_TRIALS} trials"}
    out = args.out or results_stem(args.sampler)
    (RESULTS / f"{out}.json").write_text(json.dumps(data, indent=1))
    (RESULTS / f"{out}.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
