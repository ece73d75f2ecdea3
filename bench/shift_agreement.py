"""Does the calibration batch see what the held-out evaluation sees? Shift and realism vs the FID-proxy.

Scores `bench/realism.py`'s schedules (full compute at fewer steps on three solvers, forecasting plans
on DPM-Solver++ 2M) on a study's calibration batch (24 images, seeds 0..23, against their converged
images) with the study's quality objectives, made as `studies.build` makes them for a default study:
the FID-proxy (paired, 12-d projected embedded-digits features), the feature shift and the realism
objective (64-d; `studies.realism`: the Fréchet distance from the training digits' statistics of 200
converged images of seeds 0..199 shifted by the candidate's paired change; `realism_mean`, its mean
term alone, the form of realism studies created before; `realism_24`, that mean term offset from the 24
calibration images alone, shows why it needs the larger sample). It ranks them against the held-out
numbers in `bench/results/realism-embedded.json` (200 held-out images, seeds 777000+; run
`bench/realism.py` first) and, where `bench/realism.py --seed0 999000` wrote it, against the FID-proxy
against real digits of 200 images of seeds 999000+ (`fid_real_999000`: seeds no choice looked at):
Kendall τ of each objective with PSNR against the converged reference, the FID-proxy against the
converged images and against real digits. Writes bench/results/shift-agreement.{json,md}.

    PYTHONPATH=src python bench/shift_agreement.py [--images 24]    # ~5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torchmetrics.functional.regression import kendall_rank_corrcoef

from datosearch import objectives as obj
from datosearch.studies.build import extra_scores, make_extractor
from datosearch.studies.realism import real_stats
from datosearch.studies.resolve import resolve
from heldout_setup import held_out
from realism import CONVERGED_LABEL, schedules

RESULTS = Path(__file__).parent / "results"
HELD_OUT = {"psnr_converged": -1, "fid_converged": 1, "fid_real": 1}  # sign: lower is better
CONFIRM = "fid_real_999000"  # the FID-proxy against real digits on other held-out seeds (bench/realism.py --seed0 999000)
OBJECTIVES = ("shift", "realism")
SCORES = (*OBJECTIVES, "realism_mean", "realism_24")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24)
    args = p.parse_args()
    start = time.perf_counter()
    realism = json.loads((RESULTS / "realism-embedded.json").read_text())
    held = {r["label"]: r for r in realism["rows"]}
    h = held_out(args.images, args.images, seed0=0)
    ref = h.conv.images
    # the objectives as `studies.build.build_evaluator` makes them for a default study
    config, _ = resolve({"model": "embedded", "images": args.images, "objectives": ["fid", *OBJECTIVES]}, pipe=h.pipe)
    fid = obj.FidProxy(make_extractor(config, "cpu"), reference_images=ref, paired=True)
    with tempfile.TemporaryDirectory() as cache:
        scores = extra_scores(config, ref, "cpu", h.pipe, Path(cache))
    # the mean term alone, offset from the 200-image sample (realism before its Fréchet form) or from the
    # calibration batch alone (no larger sample)
    real = scores["realism"]  # its reference features are the calibration batch's, `mu` the sample's mean
    mu = real_stats(config, real.extractor, config.prompts)[0]
    scores["realism_mean"] = obj.FeatureShift(real.extractor, ref, offset=real.mu - mu)
    scores["realism_24"] = obj.FeatureShift(real.extractor, ref, offset=real.reference.mean(0) - mu)
    confirm = RESULTS / "realism-embedded-999000.json"
    if confirm.exists():
        for r in json.loads(confirm.read_text())["rows"]:
            held[r["label"]][CONFIRM] = r["fid_real"]
    measures = {**HELD_OUT, **({CONFIRM: 1} if confirm.exists() else {})}
    rows = []
    for label, images in [(CONVERGED_LABEL, ref)] + [(lab, h.ev.images(s)) for lab, s in schedules(h)]:
        rows.append({"label": label, "fid": fid(images), **{o: scores[o](images) for o in SCORES},
                     **{k: held[label][k] for k in measures}})
        print(rows[-1], flush=True)
    tau = {o: {k: float(kendall_rank_corrcoef(torch.tensor([r[o] for r in rows]),
                                              torch.tensor([sign * r[k] for r in rows]), variant="b"))
               for k, sign in measures.items()} for o in ("fid", *SCORES)}
    meta = {"device": obj.device_name("cpu"), "torch": torch.__version__, "calibration_images": args.images,
            "heldout_images": realism["meta"]["images"],
            "tau": tau, "runtime_s": time.perf_counter() - start}
    (RESULTS / "shift-agreement.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (RESULTS / "shift-agreement.md").write_text(markdown(rows, meta))
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    tau = meta["tau"]
    head = ["# Calibration objectives vs the held-out evaluation (embedded model)", "",
            f"{meta['device']}, torch {meta['torch']}; objectives on {meta['calibration_images']} calibration "
            f"images (seeds 0..{meta['calibration_images'] - 1}) against their converged images; held-out "
            f"numbers from `bench/results/realism-embedded.json` ({meta['heldout_images']} images, seeds 777000+). "
            f"Runtime {meta['runtime_s'] / 60:.1f} min. `bench/shift_agreement.py`.", "",
            "Kendall τ (both sides oriented lower = better; the last column: the FID-proxy against real digits on "
            "200 other held-out images, seeds 999000+):", "",
            "| calibration objective | PSNR vs converged | FID-proxy vs converged | FID-proxy vs real | same, seeds 999000+ |",
            "|---|---:|---:|---:|---:|"]
    head += [f"| {o} | {t['psnr_converged']:.3f} | {t['fid_converged']:.3f} | {t['fid_real']:.3f} | "
             f"{t.get(CONFIRM, float('nan')):.3f} |" for o, t in tau.items()]
    head += ["", "| schedule | FID-proxy (calib.) | shift (calib.) | realism (calib.) | realism_mean (calib.) | "
             "PSNR vs converged | FID-proxy vs converged | FID-proxy vs real | same, seeds 999000+ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    head += [f"| {r['label']} | {r['fid']:.3f} | {r['shift']:.3f} | {r['realism']:.3f} | {r['realism_mean']:.3f} | "
             f"{min(r['psnr_converged'], 99.99):.2f} | {r['fid_converged']:.2f} | {r['fid_real']:.1f} | "
             f"{r.get(CONFIRM, float('nan')):.1f} |" for r in rows]
    return "\n".join(head) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
