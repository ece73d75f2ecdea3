"""The `datosearch run` command line that creates a study with the same stored configuration.

Every option is spelled out, so the command means the same under later defaults. The device name
is not an option (it is where the command runs); calibration seeds other than 0..N-1, and
encoding fields no option sets, cannot be given on the command line and are named in `caveats`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..space.encoding import EncodingConfig
from .build import default_prompts
from .config import StudyConfig

# encoding fields the CLI can set (`--encoding`, `--branches`, `--call-scale`, `--max-nonfull-run`,
# `--min-full`, `--search-steps`) or that follow from the model and steps (n_calls, blocks)
SET_BY_OPTIONS = {"kind", "branches", "call_scale", "max_nonfull_run", "min_full", "trajectories", "n_calls", "blocks"}


@dataclass
class Command:
    """The argument list and what it cannot reproduce."""

    args: list[str]
    caveats: list[str] = field(default_factory=list)

    def text(self) -> str:
        return shlex.join(self.args)


def reproduce_command(config: StudyConfig, study: str, storage: str | None = None,
                      trials: int | None = None) -> Command:
    """`datosearch run ...` for `config` (a new study named `study`; `storage` as given, else the default)."""
    n = len(config.prompts)
    args = ["datosearch", "run", "--study", study]
    if storage:
        args += ["--storage", storage]
    if trials:
        args += ["--trials", str(trials)]
    args += ["--model", config.model, "--images", str(n)]
    caveats = []
    if config.prompts != default_prompts(n)[0]:
        distinct = list(dict.fromkeys(config.prompts))
        if [distinct[i % len(distinct)] for i in range(n)] != config.prompts:
            caveats.append("the calibration prompts are not a repeated list: `--prompt` cycles its prompts")
        for prompt in distinct:
            args += ["--prompt", prompt]
    if config.seeds != list(range(n)):
        caveats.append(f"the calibration seeds are not 0..{n - 1}; the command uses those")
    args += ["--steps", str(config.steps), "--scheduler", config.scheduler, "--guidance", f"{config.guidance:g}"]
    if config.height == config.width:
        args += ["--resolution", str(config.height)]
    else:
        caveats.append(f"the images are {config.height}x{config.width}; --resolution gives square images only")
    enc = EncodingConfig.normalised(config.encoding)
    args += ["--objectives", ",".join(config.objectives), "--reference", config.reference,
             "--latency", config.latency_mode, "--extractor", config.extractor, "--dtype", config.dtype,
             "--batch-size", str(config.batch_size), "--latency-images", str(config.latency_images),
             "--latency-warmup", str(config.latency_warmup), "--latency-repeats", str(config.latency_repeats),
             "--sampler", config.sampler, "--population", str(config.population), "--seed", str(config.sampler_seed),
             "--encoding", enc["kind"], "--search-steps" if enc["trajectories"] else "--no-search-steps",
             "--branches", ",".join(map(str, enc["branches"])), "--min-full", str(enc["min_full"])]
    if enc["max_nonfull_run"] is not None:
        args += ["--max-nonfull-run", str(enc["max_nonfull_run"])]
    if enc["call_scale"]:
        args.append("--call-scale")
    defaults = EncodingConfig(n_calls=1).to_dict()
    other = sorted(k for k, v in enc.items() if k not in SET_BY_OPTIONS and v != defaults[k])
    if other:
        caveats.append(f"encoding fields no option sets differ from the defaults: {', '.join(other)}")
    if not config.fid_paired:
        caveats.append("the study's FID-proxy has no paired term (a new study has one)")
    return Command(args, caveats)
