"""Does a user who copies README's Python example get the speed the export printed? (issue 29)

For every schedule of an export (`exports/NAME/index.json`, re-scored on held-out images by `datosearch
export --heldout N`), time README's example as written,

    handle = datosearch.apply(pipe, "schedule_K.json")
    images = pipe(prompts, generator=..., **handle.call_kwargs).images
    handle.remove()

against the study's own full compute (its scheduler and steps, no hooks), in interleaved rounds on the
steady clock (process CPU seconds, one torch thread), and put its median speedup next to the held-out
speedup the export printed. Writes `bench/results/readme-speedup.md` and `.json`.

    python bench/readme_speedup.py --export exports/demo --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Callable

import torch

import datosearch
from datosearch import objectives as obj
from datosearch.space import io
from datosearch.space.trajectory import Trajectory, swapped
from datosearch.studies.build import load_pipeline
from datosearch.studies.heldout import count_calls
from datosearch.studies.protocol import HeldoutProtocol

RESULTS = Path(__file__).parent / "results"


def readme_run(pipe: Any, path: Path, prompts: list[str], seeds: list[int]) -> Callable[[], dict[str, int]]:
    """One generation as README's example writes it; returns the U-Net calls it made."""
    def run() -> dict[str, int]:
        handle = datosearch.apply(pipe, path)
        try:
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            with count_calls(pipe.unet) as calls, torch.no_grad():
                pipe(prompts, generator=gens, output_type="pt", **handle.call_kwargs)
            return calls
        finally:
            handle.remove()
    return run


def full_run(pipe: Any, own: Trajectory, prompts: list[str], seeds: list[int]) -> Callable[[], dict[str, int]]:
    """The study's own full compute (no hooks)."""
    def run() -> dict[str, int]:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        with swapped(pipe, own), count_calls(pipe.unet) as calls, torch.no_grad():
            pipe(prompts, generator=gens, output_type="pt", **own.call_kwargs())
        return calls
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="an export directory with a re-scored index.json")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--images", type=int, default=4, help="images per timed generation (the held-out check's 4)")
    args = p.parse_args()
    torch.set_num_threads(1)
    index = json.loads((Path(args.export) / "index.json").read_text())
    config = index["config"]
    pipe, _ = load_pipeline(config["model"], "cpu", config.get("dtype", "float32"))
    own = Trajectory(config["scheduler"], config["steps"])
    protocol = HeldoutProtocol(args.images)
    entries = [e for e in index["entries"] if e.get("heldout")]
    runs = [full_run(pipe, own, protocol.prompts, protocol.seeds)] + [
        readme_run(pipe, Path(args.export) / e["file"], protocol.prompts, protocol.seeds) for e in entries]
    clock = obj.steady_clock("cpu")
    for run in runs:  # warm-up
        run()
    times: list[list[float]] = [[] for _ in runs]
    calls: list[dict[str, int]] = [{} for _ in runs]
    for r in range(args.rounds):
        for i, run in enumerate(runs):
            out: dict[str, Any] = {}
            times[i].append(obj.measure_latency(lambda: out.update(run()), "cpu", 0, 1, clock).median_s)
            calls[i] = dict(out)
        print(f"round {r + 1}/{args.rounds}", flush=True)
    rows = []
    for k, e in enumerate(entries, start=1):
        ratios = [f / t for f, t in zip(times[0], times[k])]
        schedule = io.load(Path(args.export) / e["file"])
        readme, printed = statistics.median(ratios), e["heldout"]["speedup_vs_fullcompute"]
        rows.append({"file": e["file"], "trajectory": schedule.trajectory.label() if schedule.trajectory else None,
                     "unet_calls": calls[k], "heldout_unet_calls": e["heldout"].get("unet_calls"),
                     "readme_speedup": readme, "readme_range": [min(ratios), max(ratios)],
                     "heldout_speedup": printed, "ratio": readme / printed})
    result = {"device": obj.device_name(torch.device("cpu")), "clock": clock, "rounds": args.rounds,
              "images": args.images, "export": str(args.export), "full_compute": own.label(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "readme-speedup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# README's Python example against the export's held-out speedup ({result['device']})", "",
             f"{args.rounds} interleaved rounds, {args.images} images per generation, {clock} clock, one torch "
             f"thread; speedup against {own.label()} full compute without hooks.", "",
             "| schedule | trajectory | U-Net calls (README / held-out) | README speedup (range) | held-out speedup | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['trajectory']} | {r['unet_calls'].get('unet')} / {r['heldout_unet_calls']} | "
                     f"{r['readme_speedup']:.2f}x ({r['readme_range'][0]:.2f}-{r['readme_range'][1]:.2f}) | "
                     f"{r['heldout_speedup']:.2f}x | {r['ratio']:.2f} |")
    lines += ["", f"Lowest ratio: {min(r['ratio'] for r in rows):.2f}."]
    (RESULTS / "readme-speedup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
