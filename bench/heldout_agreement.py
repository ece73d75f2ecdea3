"""Do the held-out measures agree with each other? The ceiling on any one quality objective (issue 31).

    PYTHONPATH=src python bench/heldout_agreement.py [bench/results/heldout-*.json ...]

Issue 31 asks the default objectives to rank held-out PSNR against the converged reference *and* the
held-out FID-proxy against real digits at Kendall τ ≥ 0.8. Kendall's distance (the share of discordant
pairs, d = (1 - τ) / 2) obeys the triangle inequality, so one ranking X with τ(X, P) ≥ t and τ(X, F) ≥ t
needs τ(P, F) ≥ 2t - 1: no single objective can rank both above (1 + τ(P, F)) / 2. This reads the
exports that `datosearch export --heldout 200` stored under bench/results (front and anchors, no ties
in continuous measures) and reports τ between the held-out measures, over all schedules and over those
within reach of a search's front (≥ 35 dB against the converged reference), with that ceiling. Where two
exports re-scored the same schedules (by key) on other seeds, it also reports each measure's τ between the two
image sets: how reproducible the measure itself is, the noise ceiling of any agreement with it.
Writes bench/results/heldout-agreement.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.regression import kendall_rank_corrcoef

RESULTS = Path(__file__).parent / "results"
NEAR_DB = 35.0  # "within reach of a front": the exported fronts' schedules at 5+ full calls sit above it
# (measure, sign): larger is better after the sign
PAIRS = ((("psnr_converged", 1), ("fid_real", -1)), (("psnr_converged", 1), ("fid_converged", -1)),
         (("fid_converged", -1), ("fid_real", -1)))


def keyed(export: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every schedule the export re-scored on held-out images by its key: the front's entries and the
    anchors, but full compute's own reference (PSNR 100 against itself) left out."""
    out = {e["key"]: e["heldout"] for e in export["entries"] if e.get("heldout")}
    out.update({a.get("schedule_key") or a["name"]: a for a in export["heldout"]["anchors"]})
    return {k: r for k, r in out.items() if r.get("psnr_converged", 100.0) < 99.0}


def kendall(x: list[float], y: list[float]) -> float:
    return float(kendall_rank_corrcoef(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64),
                                       variant="b"))


def tau(rs: list[dict[str, Any]], a: tuple[str, int], b: tuple[str, int]) -> float:
    return kendall([a[1] * r[a[0]] for r in rs], [b[1] * r[b[0]] for r in rs])


def one(name: str, export: dict[str, Any]) -> dict[str, Any]:
    rs = list(keyed(export).values())
    near = [r for r in rs if r["psnr_converged"] >= NEAR_DB]
    out: dict[str, Any] = {"export": name, "images": export["heldout"]["n_images"],
                           "seed0": export["heldout"]["seed0"], "schedules": len(rs), "near": len(near)}
    for a, b in PAIRS:
        key = f"{a[0]}~{b[0]}"
        out[key], out[f"{key} (near)"] = tau(rs, a, b), tau(near, a, b)
    out["ceiling"] = (1 + out["psnr_converged~fid_real"]) / 2
    return out


def reproducibility(loaded: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each measure's τ between two exports on disjoint image sets (other first seeds), over the schedules
    both re-scored (≥ 10)."""
    exports = {name: keyed(e) for name, e in loaded.items()}
    names, out = sorted(exports), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = [k for k in exports[a] if k in exports[b]]
            if len(common) < 10 or loaded[a]["heldout"]["seed0"] == loaded[b]["heldout"]["seed0"]:
                continue
            out.append({"exports": [a, b], "schedules": len(common),
                        **{m: kendall([exports[a][k][m] for k in common], [exports[b][k][m] for k in common])
                           for m in ("psnr_converged", "fid_real", "fid_converged")}})
    return out


def markdown(results: list[dict[str, Any]], again: list[dict[str, Any]]) -> str:
    lines = ["# Agreement between the held-out measures (issue 31)", "",
             "Kendall τ-b between held-out measures of the schedules each stored export re-scored (front and anchors; "
             f"'near': PSNR against the converged reference ≥ {NEAR_DB:.0f} dB). P: PSNR against the converged "
             "reference; F: FID-proxy against real held-out digits (lower is better); Fc: the same FID-proxy against "
             "the converged images. Ceiling: the highest τ one ranking can reach against both P and F, (1 + τ(P, F)) / 2.",
             "", "| export | images | schedules (near) | τ(P, F) | near | τ(P, Fc) | near | τ(Fc, F) | near | ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [f"{r[f'{a[0]}~{b[0]}{s}']:.2f}" for a, b in PAIRS for s in ("", " (near)")]
        lines.append(f"| {r['export']} | {r['images']} (seeds {r['seed0']}+) | {r['schedules']} ({r['near']}) | "
                     + " | ".join(cells) + f" | {r['ceiling']:.2f} |")
    lines += ["", "Each measure between two exports on disjoint image sets (the same schedules by key, other first seeds):", "",
              "| exports | schedules | τ of P | τ of F | τ of Fc |", "|---|---|---|---|---|"]
    lines += [f"| {' / '.join(r['exports'])} | {r['schedules']} | {r['psnr_converged']:.2f} | {r['fid_real']:.2f} | "
              f"{r['fid_converged']:.2f} |" for r in again]
    return "\n".join(lines) + "\n"


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(RESULTS.glob("heldout-*.json"))
    loaded = {p.name: e for p in paths if "entries" in (e := json.loads(p.read_text())) and "heldout" in e}
    results, again = [one(name, e) for name, e in loaded.items()], reproducibility(loaded)
    (RESULTS / "heldout-agreement.json").write_text(json.dumps({"exports": results, "reproducibility": again}, indent=1) + "\n")
    (RESULTS / "heldout-agreement.md").write_text(text := markdown(results, again))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
