"""Hypervolumes of `bench/evolution.py`'s studies with one shared cost model (issue 31).

    PYTHONPATH=src python bench/shared_hv.py --model sqlite:///studies/demo.db:demo \
        --bench nsga2=studies/evolution/evolution.db tpe=studies/evolution/evolution.db nsga2:before=OTHER.db=STEM ...

Each study calibrates its own latency cost model by timing, so the same enqueued first generation gets a
different predicted speed-up, and hypervolume, in every study (28.1 to 29.5 on 100 held-out images, AMD
EPYC 2-core host). Here every trial's speed-up is predicted by one stored model (`--model URL:STUDY`) instead.
Per sampler (its bench/results JSON and the SQLite file its studies are in) and seed: the hypervolume, same
reference point as the bench, of the first generation (the enqueued trials) and of all trials, in
(calibration PSNR, speed-up) over every COMPLETE trial and in (held-out PSNR, speed-up) over the bench's
re-scored rows (both fronts and the best at 5, 7, 10 calls). Writes bench/results/evolution-shared.md (`--out`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna

from datosearch.objectives.costmodel import CostModel
from datosearch.search.attrs import COSTMODEL_ATTR, OPERATOR_ATTR
from datosearch.search.local import SCORE
from datosearch.search.pareto import feasible_complete
from datosearch.studies.front import trial_schedule
from datosearch.studies.study import stored_config

from evolution import FIRST, RESULTS, front_hv as hv, results_stem, study_name


def seed_row(study: optuna.Study, rows: list[dict], model: CostModel) -> dict[str, float]:
    base = model.predict(None, n_calls=stored_config(study).encoding["n_calls"])
    done = [t for t in feasible_complete(study.get_trials(deepcopy=False)) if SCORE in t.user_attrs]
    speed = {t.number: base / model.predict(trial_schedule(t)) for t in done}
    first = [t for t in done if t.user_attrs.get(OPERATOR_ATTR) in FIRST]
    return {"calib_first": hv([(t.user_attrs[SCORE], speed[t.number]) for t in first]),
            "calib_all": hv([(t.user_attrs[SCORE], speed[t.number]) for t in done]),
            "heldout_first": hv([(r["psnr_heldout"], speed[r["trial"]]) for r in rows if r["operator"] in FIRST]),
            "heldout_all": hv([(r["psnr_heldout"], speed[r["trial"]]) for r in rows])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="URL:STUDY of the study whose stored cost model predicts every trial")
    p.add_argument("--bench", nargs="+", required=True,
                   help="SAMPLER[:LABEL]=SQLITE_FILE[=STEM] (bench/evolution.py's --sampler, --dir/--db, and its --out "
                        "if it had one; LABEL names the row where two benches ran one sampler)")
    p.add_argument("--out", default="evolution-shared", help="the table's file stem under bench/results")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name = args.model.rsplit(":", 1)
    model = CostModel.from_dict(optuna.load_study(study_name=name, storage=url).user_attrs[COSTMODEL_ATTR])
    lines = ["# Hypervolume with one shared cost model (embedded model)", "",
             f"Every trial's speed-up predicted by the cost model of study `{name}`. Cells: first generation / all "
             "trials; calibration: every COMPLETE trial; held-out: the bench's re-scored rows (both fronts, best at 5, "
             "7, 10 calls).", "", "| sampler | seed | calibration HV | held-out HV | held-out HV, the study's own model |",
             "|---|---|---|---|---|"]
    for entry in args.bench:
        named, db, *stem = entry.split("=", 2)
        sampler, label = named.split(":", 1) if ":" in named else (named, named)
        data = json.loads((RESULTS / f"{stem[0] if stem else results_stem(sampler)}.json").read_text())
        for r in data["seeds"]:
            study = optuna.load_study(study_name=study_name(sampler, r["seed"]), storage=f"sqlite:///{Path(db).resolve()}")
            s = seed_row(study, r["rows"], model)
            lines.append(f"| {label} | {r['seed']} | {s['calib_first']:.2f} / {s['calib_all']:.2f} | "
                         f"{s['heldout_first']:.2f} / {s['heldout_all']:.2f} | {r['hv_first']:.2f} / {r['hv_final']:.2f} |")
    (RESULTS / f"{args.out}.md").write_text(text := "\n".join(lines) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
