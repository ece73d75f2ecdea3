"""Why the structured encoding has a `last` gene: forecast reuse on short fast-solver trajectories,
full calls ending on the last call or not, against UniPC at as many steps as full calls.

On calibration-side seeds (0..N-1, as a study's calibration batch; never the held-out 777000+):
k full calls on UniPC / DPM-Solver++ 2M at n steps, every other call a forecast reuse (order, damping).
`--mode last`: the placements the `last` gene decodes (`full_positions(n, k, warp, 0, last=True)`);
`--mode all`: every placement with call 0 full (sampled when there are many), last call full or not.
PSNR against the converged reference (DPM-Solver++ 2M, 100 steps), FID-proxy against real held-out
digits. Rows append to `results/forecast-last-<mode>.jsonl` as they come (a run can be cut short).

    PYTHONPATH=src python bench/forecast_last.py --mode last     # ~25 min on 2 CPU cores
    PYTHONPATH=src python bench/forecast_last.py --summary       # results/forecast-last.md from the rows
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from datosearch import objectives as obj
from datosearch.space.placement import from_full_calls, full_positions
from datosearch.space.schedule import REUSE, Schedule
from heldout_setup import held_out, on

RESULTS = Path(__file__).parent / "results"
FORECASTS = ((2, 1.0), (1, 1.0), (1, 0.5))
STEPS = {5: range(6, 11), 7: range(8, 15), 10: (12, 14, 16, 20)}
WARPS = (0.7, 1.0, 1.3)
MAX_PLACEMENTS = 40


def placements(mode: str, n: int, k: int) -> Iterator[tuple[int, ...]]:
    if mode == "last":
        yield from dict.fromkeys(tuple(full_positions(n, k, w, 0.0, last=True)) for w in WARPS)
        return
    combos = [(0,) + c for c in itertools.combinations(range(1, n), k - 1)]
    yield from combos[:: max(1, -(-len(combos) // MAX_PLACEMENTS))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("last", "all"), default="last")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--summary", action="store_true", help="only write forecast-last.md from the stored rows")
    args = p.parse_args()
    if args.summary:
        (RESULTS / "forecast-last.md").write_text(markdown())
        return 0
    h = held_out(args.images, 50, seed0=0)
    out = (RESULTS / f"forecast-last-{args.mode}.jsonl").open("a")
    meta = {"device": obj.device_name("cpu"), "torch": torch.__version__, "images": args.images, "seeds": "0.."}
    out.write(json.dumps({"meta": meta}) + "\n")

    def score(label: str, schedule: Schedule, k: int, pos: tuple[int, ...] | None = None) -> None:
        images = h.ev.images(schedule)
        row = {"label": label, "k": k, "n": schedule.n_calls, "pos": pos and list(pos),
               "psnr": obj.paired_metrics(images, h.conv.images)["psnr"], "fid": h.fid(images)}
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(f"{label:52s} {row['psnr']:6.2f} dB {row['fid']:6.1f}", flush=True)

    for name, k in itertools.product(("unipc", "dpmpp2m"), STEPS):
        score(f"{name} {k} steps", on(Schedule.full(k), name, k), k)
    for k, steps in STEPS.items():
        for n in steps:
            for pos, name, (order, damping) in itertools.product(placements(args.mode, n, k), ("unipc", "dpmpp2m"),
                                                                 FORECASTS):
                plan = on(from_full_calls(n, list(pos), REUSE), name, n).with_forecast(order, damping)
                score(f"{name} {n}: {k} full {pos} o{order} d{damping}", plan, k, pos)
    return 0


def _rows() -> list[dict[str, Any]]:
    """The stored rows of both modes, each schedule once (the modes share some placements)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(RESULTS.glob("forecast-last-*.jsonl")):
        rows.update((r["label"], r) for r in map(json.loads, path.read_text().splitlines()) if "label" in r)
    return list(rows.values())


def markdown() -> str:
    """Per full-call count: UniPC at k steps, then the best plans ending on a full call and not."""
    rows = _rows()
    anchors = {r["k"]: r for r in rows if r["label"] == f"unipc {r['k']} steps"}
    lines = ["# Forecast reuse on short trajectories: the last call full or not (embedded model)", "",
             "Calibration-side seeds 0..99 (100 images); PSNR vs DPM-Solver++ 2M 100 steps, FID-proxy vs real "
             "held-out digits; Δ against UniPC at k steps. Passing: ≥ +1 dB and ≤ +10 % FID-proxy. "
             "`bench/forecast_last.py`; raw rows in `forecast-last-*.jsonl`.", ""]
    for k, a in sorted(anchors.items()):
        plans = [r for r in rows if r["k"] == k and r["pos"]]
        lines += [f"## {k} full calls (UniPC {k}: {a['psnr']:.2f} dB, FID-proxy {a['fid']:.1f})", "",
                  "| last call | plans | passing | best Δ PSNR (its FID-proxy ratio) | best passing |",
                  "|---|---:|---:|---|---|"]
        for last in (True, False):
            mine = [r for r in plans if (r["pos"][-1] == r["n"] - 1) == last]
            if not mine:
                continue
            passing = [r for r in mine if r["psnr"] - a["psnr"] >= 1 and r["fid"] <= 1.1 * a["fid"]]
            best = max(mine, key=lambda r: r["psnr"])
            top = max(passing, key=lambda r: r["psnr"], default=None)
            lines.append(f"| {'full' if last else 'not full'} | {len(mine)} | {len(passing)} | "
                         f"{best['psnr'] - a['psnr']:+.2f} dB ({best['fid'] / a['fid']:.2f}) | "
                         + (f"{top['label']}: {top['psnr'] - a['psnr']:+.2f} dB, {top['fid'] / a['fid']:.2f} |"
                            if top else "none |"))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
