"""Does where the steps sit travel between trajectories? (the crossover's timestep pair, issue 31)

    PYTHONPATH=src python bench/warp_transfer.py [--study demo] [--storage sqlite:///studies/demo.db]

On a stored default study (README command 1), on its own calibration images only: each seeded member on a
trajectory that takes timesteps is scored (calibration PSNR against the study's reference, as its trials are)
on its own timestep pair and on the pair of the best trial at each full-call count of the refined members and
their local children. Writes bench/results/warp-transfer.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from datosearch.objectives import device_name, generation_threads, set_timing_threads
from datosearch.objectives.paired import paired_metrics
from datosearch.search.attrs import OPERATOR_ATTR
from datosearch.search.local import SCORE
from datosearch.space.encoding import make_encoding
from datosearch.studies.launch import open_run

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--storage", default="sqlite:///studies/demo.db")
    args = p.parse_args()
    set_timing_threads(1)  # the default study's recorded device: timing on one thread
    torch.set_num_threads(1)
    run = open_run(args.storage, args.study, {}, resume=True)
    torch.set_num_threads(generation_threads())
    enc, ev = make_encoding(run.config.encoding), run.evaluator
    done = [t for t in run.study.get_trials(deepcopy=False) if SCORE in t.user_attrs and "tstart" in t.params]
    tuned = [t for t in done if t.user_attrs.get(OPERATOR_ATTR) in ("refined", "local") and enc.warped(t.params)]
    donors = {}
    for t in sorted(tuned, key=lambda t: t.user_attrs[SCORE]):  # the best trial per full-call count wins
        donors[t.params["full"]] = t
    members = [t for t in done if t.user_attrs.get(OPERATOR_ATTR) == "seeded" and enc.warped(t.params)]
    rows = []
    for m in members:
        scores = {"own": m.user_attrs[SCORE]}
        for full, d in sorted(donors.items()):
            genes = {**m.params, "tstart": d.params["tstart"], "tpow": d.params["tpow"]}
            scores[f"{full} full (trial {d.number})"] = paired_metrics(ev.images(enc.decode(genes)), ev.reference)["psnr"]
        rows.append({"trial": m.number, "traj": m.params["traj"], "full": m.params["full"],
                     "own": [m.params["tstart"], m.params["tpow"]], "psnr": scores})
        print(rows[-1], file=sys.stderr)
    data = {"device": device_name(ev.pipe.device), "study": args.study, "images": len(ev.calibration.prompts),
            "donors": {str(k): [d.number, d.params["tstart"], d.params["tpow"]] for k, d in sorted(donors.items())},
            "rows": rows}
    (RESULTS / "warp-transfer.json").write_text(json.dumps(data, indent=1))
    cols = list(rows[0]["psnr"]) if rows else []
    lines = ["# Timestep pairs moved between trajectories (calibration images only)", "",
             f"{data['device']}; study `{args.study}` (README command 1), its {data['images']} calibration images; "
             "calibration PSNR (dB) against the study's reference of each seeded member on its own timestep pair "
             "(start, power) and on the pair of the best refined or local trial at each full-call count.", "",
             "| member | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        name = f"{r['trial']}: {r['traj'].split(':')[0].replace('Scheduler', '')} {r['traj'].split(':')[1]}, {r['full']} full"
        lines.append(f"| {name} | " + " | ".join(f"{r['psnr'][c]:.2f}" for c in cols) + " |")
    lines += ["", "Pairs: " + "; ".join(f"{k} full: trial {n} ({a:.3f}, {b:.3f})" for k, (n, a, b) in data["donors"].items())]
    (RESULTS / "warp-transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
