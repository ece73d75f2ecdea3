"""The study-configuration options of `datosearch run | resume` (argparse): what a study stores and a
resume must match (`studies.resolve` fills in the defaults)."""

from __future__ import annotations

import argparse

from .options import DEFAULTS


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in _csv(text)]


def add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("study configuration (stored in the study; a resume must match it)")
    g.add_argument("--model", help="'embedded' (default), 'tiny', a local diffusers directory or a cached hub id")
    g.add_argument("--prompt", dest="prompts", action="append", help="calibration prompt (repeatable; cycled)")
    g.add_argument("--images", type=int, help=f"number of calibration images (default {DEFAULTS['images']}), seeds 0..N-1")
    g.add_argument("--steps", type=int, help=f"inference steps (default {DEFAULTS['steps']})")
    g.add_argument("--scheduler", help="ddim, pndm, euler, dpm or a diffusers scheduler class (default: the model's)")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the pipeline's own, else 7.5)")
    g.add_argument("--resolution", type=int, help="image size in pixels (default: the model's)")
    g.add_argument("--objectives", type=_csv, help="comma list of fid, latency, macs, psnr, adherence, shift, realism "
                                                   "(default psnr,latency,shift)")
    g.add_argument("--real-stats", help="realism objective: .npz with 'mu' and 'sigma' of the extractor's features on "
                                        "real images (default for the embedded model: its training digits)")
    g.add_argument("--reference", choices=["converged", "full"],
                   help="quality is measured against: converged (default; DPM-Solver++ 2M at 100 linspace steps, fair to "
                        "every sampler) or full (the study's own full compute)")
    g.add_argument("--latency", dest="latency_mode", choices=["model", "measured"],
                   help="latency objective: model (default; predicted from the plan by a cost model calibrated once "
                        "per study) or measured (every trial timed)")
    g.add_argument("--extractor", help="FID-proxy features: embedded-digits, conv-random, inception, module:pkg.mod:attr")
    g.add_argument("--device", help="torch device (default cuda if available, else cpu)")
    g.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    g.add_argument("--threads", type=int, help="torch CPU threads while timing (default 1 on CPU; part of the recorded "
                                               "device name); images are generated on every core, in one process "
                                               "per core on 2 to 4 cores (datosearch.search.processes)")
    g.add_argument("--batch-size", type=int, help=f"images per pipeline call (default {DEFAULTS['batch_size']})")
    g.add_argument("--latency-images", type=int,
                   help=f"images per timed generation (default {DEFAULTS['latency_images']})")
    g.add_argument("--latency-warmup", type=int,
                   help=f"untimed generations before timing (default {DEFAULTS['latency_warmup']})")
    g.add_argument("--latency-repeats", type=int,
                   help=f"timed repeats, the median is used (default {DEFAULTS['latency_repeats']})")
    g.add_argument("--sampler", choices=["nsga2", "nsga3", "tpe", "gp", "random"], help=f"default {DEFAULTS['sampler']}")
    g.add_argument("--population", type=int, help=f"NSGA population size (default {DEFAULTS['population']})")
    g.add_argument("--seed", dest="sampler_seed", type=int, help=f"sampler seed (default {DEFAULTS['sampler_seed']})")
    g.add_argument("--encoding", dest="encoding_kind", choices=["structured", "calls", "intervals"],
                   help="cache-plan genes (default structured: full-call count and placement, per-phase action "
                        "and forecast; calls: one gene per U-Net call)")
    g.add_argument("--search-steps", action=argparse.BooleanOptionalAction,
                   help="also search the base trajectory: the study's scheduler, DPM-Solver++ 2M and UniPC at "
                        "10..50 steps (default on with the structured encoding)")
    g.add_argument("--branches", type=_ints, help="shallow-step branch choices, e.g. 0,1,2")
    g.add_argument("--call-scale", action="store_const", const=True, help="search a per-call pruning multiplier too")
    g.add_argument("--max-nonfull-run", type=int, help="constraint: most consecutive non-full calls (default 5 for "
                                                         "the calls and intervals encodings, none for structured)")
    g.add_argument("--min-full", type=int, help=f"constraint: fewest full calls (default {DEFAULTS['min_full']})")
