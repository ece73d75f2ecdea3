"""The refined members of two versions of `studies/refine.py` on fresh held-out images (issue 31).

    PYTHONPATH=src:tests:bench python bench/refine_compare.py --old HEAD~1 [--seeds 0,1,2] [--images 200] [--seed0 666000] [--out STEM]

For each NSGA-II seed, the refined members at 5, 7 and 10 full calls as a default study on the embedded model
finds them (its 24 calibration images, DPM-Solver++ 2M at 100 linspace steps as the reference), once with the
module as it is at git revision `--old` and once with the installed one, then all of them and PLMS-50 full
compute scored on `--images` held-out images from seed `--seed0` (PSNR against the converged reference,
FID-proxy against real digits). Writes bench/results/OUT.{json,md} (`--out`, default refine-compare).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import torch

from datosearch.objectives import device_name
from datosearch.search import processes
from datosearch.studies import refine
from datosearch.studies.heldout import score_heldout
from search_helpers import embedded_study

RESULTS = Path(__file__).parent / "results"
CALLS = (5, 7, 10)


def old_module(rev: str) -> ModuleType:
    """`studies/refine.py` as it was at `rev`, imported beside the installed one (as a module of the same
    package, so its relative imports resolve; the source tree is not touched)."""
    source = subprocess.run(["git", "show", f"{rev}:src/datosearch/studies/refine.py"], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).parent).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "refine_at_rev.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("datosearch.studies._refine_at_rev", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, help="git revision of the old studies/refine.py")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed0", type=int, default=666000)
    p.add_argument("--out", default="refine-compare", help="results file stem under bench/results")
    args = p.parse_args()
    old = old_module(args.old)
    pipe, config, reference = embedded_study(images=24, reference_steps=100)
    torch.set_num_threads(2)
    processes.enable(True)
    started = time.perf_counter()
    schedules, names = [None], ["PLMS 50 full compute"]
    for seed in (int(s) for s in args.seeds.split(",")):
        seeded = replace(config, sampler_seed=seed)
        for label, module in ((f"old ({args.old})", old), ("new", refine)):
            members = module.refined_members(pipe, seeded, reference, None, calls=CALLS)
            schedules += members
            names += [f"seed {seed}, {k} full calls, {label}: {m.meta['label']}" for k, m in zip(CALLS, members)]
    rows = score_heldout(pipe, schedules, args.images, names=names, steps=config.steps, scheduler=config.scheduler,
                         guidance=config.guidance, model="embedded", repeats=1, refine_factor=0, seed0=args.seed0,
                         log=lambda m: print(f"  {m}", file=sys.stderr))
    out = {"device": device_name(pipe.device), "images": args.images, "seed0": args.seed0, "old": args.old,
           "minutes": round((time.perf_counter() - started) / 60, 1),
           "rows": [{"name": n, "psnr": r["psnr_converged"], "fid_real": r["fid_real"],
                     "plan": None if s is None else s.to_dict()} for n, r, s in zip(names, rows, schedules)]}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1))
    lines = [f"# Refined members, `studies/refine.py` at {args.old} against now (embedded model)", "",
             f"{out['device']}; {args.images} held-out images from seed {args.seed0}; PSNR against the converged "
             f"reference, FID-proxy against real digits; {out['minutes']} min. `bench/refine_compare.py`.", "",
             "| schedule | PSNR dB | FID-proxy |", "|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['psnr']:.2f} | {r['fid_real']:.1f} |" for r in out["rows"]]
    (RESULTS / f"{args.out}.md").write_text(text := "\n".join(lines) + "\n")
    print(text)
    processes.enable(False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
