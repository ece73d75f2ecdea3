"""Rank agreement of the search's quality proxy with the held-out evaluation of an exported study.

    PYTHONPATH=src python bench/proxy_agreement.py --study demo [--storage URL] [--index exports/demo/index.json]

Takes every schedule the export re-scored on held-out images (the front and the compared anchors; run
`datosearch export --heldout N` first) and reports Kendall's tau between each of its search-time
quality objectives (the FID-proxy and, where the study has it, the feature shift, on the calibration
images) and of the calibration PSNR against the reference that every trial stores and each held-out measure (PSNR against the converged reference and against full compute,
FID-proxy against real held-out digits and against the converged images). Writes
bench/results/proxy-agreement.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import torch
from torchmetrics.functional.regression import kendall_rank_corrcoef

from datosearch.search.attrs import ANCHOR_ATTR, PAIRED_PREFIX
from datosearch.studies.storage import default_url

# sign: lower is better once the objective is in minimise form
MEASURES = {"psnr_converged": -1, "psnr_fullcompute": -1, "fid_real": 1, "fid_converged": 1}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--storage")
    p.add_argument("--index")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage or default_url(args.study))
    index = json.loads(Path(args.index or f"exports/{args.study}/index.json").read_text())
    names = study.metric_names or ["fid"]
    quality = [(i, n) for i, n in enumerate(names) if n not in ("latency", "macs")]
    # every trial's calibration PSNR against the reference (a candidate objective whether or not the study has it)
    psnr = PAIRED_PREFIX + "psnr"
    anchors = {t.user_attrs[ANCHOR_ATTR]: [*t.values, t.user_attrs.get(psnr)] for t in study.trials
               if t.values is not None and t.user_attrs.get(ANCHOR_ATTR)}
    rows = {e["heldout"]["name"]: ([*(e["values"][n] for n in names), e["paired"].get("psnr")], e["heldout"])
            for e in index["entries"]}
    rows.update({a["name"]: (anchors[a["name"]], a) for a in index["heldout"]["anchors"] if a["name"] in anchors})
    out = {"study": args.study, "schedules": len(rows), "heldout_images": index["heldout"]["n_images"], "tau": {}}
    maximise = optuna.study.StudyDirection.MAXIMIZE
    for i, name in quality + [(len(names), f"{psnr} (calibration)")]:
        sign0 = -1 if i == len(names) or study.directions[i] == maximise else 1
        out["tau"][name] = {}
        for measure, sign in MEASURES.items():
            pairs = [(sign0 * v[i], sign * h[measure]) for v, h in rows.values() if h.get(measure) is not None]
            a, b = (torch.tensor(col, dtype=torch.float64) for col in zip(*pairs))
            out["tau"][name][measure] = float(kendall_rank_corrcoef(a, b, variant="b"))
    print(json.dumps(out, indent=2))
    results = Path(__file__).parent / "results" / "proxy-agreement.json"
    results.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
