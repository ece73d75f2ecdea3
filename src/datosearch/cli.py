"""`datosearch run | resume | worker | export | report | apply | show` (argparse).

Each subcommand is an entry of `COMMANDS` (name → (add_arguments, handler)). Exit status: 0 done;
2 bad input from the user (a `DatosearchError` or `ScheduleError`: one sentence on stderr); 3 a search
that stopped before its budget because candidates kept failing (how many, and the commonest reason);
1 an internal error (traceback on stderr); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from .space.schedule import ScheduleError
from .errors import DatosearchError, SearchIncompleteError, UserValueError
from .cli_config import add_config_args
from .options import HELDOUT_SEED0, MAX_TRIALS, export_dir, report_path

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler, str]] = {}


DEFAULT_TRIALS = 96  # COMPLETE trials of a new study
DEFAULT_PICTURES = 4  # held-out seeds pictured per schedule in the report (studies.report_pictures.DEFAULT_PICTURES)
# `run`'s quick held-out check of the exported front: images and interleaved timing rounds, with no extra rounds
# for close calls (the claims in README come from `export --heldout 200`, which times in verify.TIMING_ROUNDS
# rounds and refines close calls)
DEFAULT_HELDOUT, RUN_TIMING_ROUNDS = 40, 3


class UsageError(UserValueError):
    """Bad input from the user: reported in one sentence, exit status 2."""


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (add_arguments, handler, help)
        return handler
    return register


# ------------------------------------------------------------------------------------------ options
def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///studies/STUDY.db; also postgresql://, "
                                     "mysql://, journal:PATH)")


def _worker_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stale-after", type=float, help="fail and re-queue RUNNING trials of other hosts older than this "
                   "many seconds (Journal storage, which has no heartbeats; RDB storages use heartbeats)")
    p.add_argument("--budget", type=float, metavar="MINUTES",
                   help="start no new trial once MINUTES have passed since this command's first trial started (the "
                        "running one finishes and is stored); without --trials, a new study has no trial target; "
                        "this command's limit only, not stored in the study")


def _run_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--trials", type=int, help="COMPLETE trials the study should hold, over all workers "
                                              f"(run default {DEFAULT_TRIALS})")
    p.add_argument("--no-outputs", action="store_true", help="skip the final table, export and report")
    p.add_argument("--heldout", type=int, default=DEFAULT_HELDOUT,
                   help=f"held-out images the exported front and the anchors are re-scored on (default {DEFAULT_HELDOUT}; "
                        "0: none)")
    _worker_common(p)
    add_config_args(p)


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="name of an existing study")
    p.add_argument("--storage", required=True, help="the study's Optuna storage URL (postgresql://, mysql://, "
                                                    "sqlite:///, journal:PATH)")
    p.add_argument("--device", help="torch device (default cuda if available, else cpu); must match the study's")
    p.add_argument("--threads", type=int, help="torch CPU threads, timing and generating (default 1; must match the "
                                               "study's recorded device)")
    _worker_common(p)
    p.set_defaults(trials=None, no_outputs=True)


def _url(args: argparse.Namespace) -> str:
    from .studies.storage import default_url

    return args.storage or default_url(args.study)


def _opts(args: argparse.Namespace) -> dict[str, Any]:
    skip = ("study", "storage", "trials", "threads", "command", "func", "stale_after", "no_progress", "no_outputs",
            "budget")  # budget: this command's time limit, not a setting of the study
    return {k: v for k, v in vars(args).items() if k not in skip}


# ------------------------------------------------------------------------------------------ run / resume
def _set_threads(args: argparse.Namespace) -> None:
    """On CPU, timing runs on `--threads` torch threads (default 1: steady on shared cores; the recorded device
    name counts them) and generating images on every core the process may use, split over processes
    (`search.processes`); a worker generates on `--threads` in-process, as it shares the machine with other
    workers."""
    import torch

    from .objectives import generation_threads, set_timing_threads
    from .search import processes
    from .studies.resolve import default_device

    threads, device = getattr(args, "threads", None), getattr(args, "device", None)
    if threads is not None or (device or default_device()) == "cpu":
        timing = 1 if threads is None else threads
        set_timing_threads(timing)
        worker = getattr(args, "command", None) == "worker"
        torch.set_num_threads(timing if worker else max(timing, generation_threads()))
        processes.enable(not worker)


def _execute(args: argparse.Namespace, resume: bool) -> int:
    from .search.runner import Deadline
    from .studies import study as studies
    from .studies.launch import open_run
    from .studies.progress import progress_bar

    url = _url(args)
    _set_threads(args)
    existed = resume or studies.exists(url, args.study)
    run = open_run(url, args.study, _opts(args), resume)
    study, config = run.study, run.config
    new_target = MAX_TRIALS if args.budget is not None else DEFAULT_TRIALS  # --budget alone: no trial target
    target = args.trials if args.trials is not None else (None if existed else new_target)
    deadline = None if args.budget is None else Deadline(60 * args.budget)
    print(f"{'created' if run.created else 'continuing'} study {args.study!r} in {url} (model {config.model}, "
          f"{config.encoding['n_calls']} U-Net calls, {len(config.prompts)} calibration images, sampler {config.sampler})",
          file=sys.stderr)
    bar = progress_bar(study, target, disabled=args.no_progress)
    try:
        studies.run(study, run.evaluator, config, target, bar.update_trial if bar else None, args.stale_after, deadline)
    finally:
        if bar:
            bar.close()
    if deadline is not None and deadline.spent:
        print(f"datosearch: {studies.time_budget_spent(study, args.budget)}", file=sys.stderr)
    if not args.no_outputs:
        _outputs(study, args, url, run.pipe, getattr(args, "heldout", 0) or 0)
    return 0


def _heldout(study: Any, url: str, pipe: Any, n_images: int, rounds: int | None = None, refine: bool = True,
             seed0: int | None = None) -> Any:
    """The export's held-out re-scoring on seeds from `seed0` (None: the protocol's; None when `n_images` is 0)."""
    if not n_images:
        return None
    from .studies.storage import study_dir
    from .studies.study import stored_config
    from .studies.heldout import REFINE_FACTOR
    from .studies.verify import TIMING_ROUNDS, heldout_scores

    def log(message: str) -> None:
        print(f"held-out: {message}", file=sys.stderr)

    cache = study_dir(url, study.study_name) / "heldout"
    return lambda entries: heldout_scores(study, entries, pipe, stored_config(study), n_images, cache, log,
                                          rounds or TIMING_ROUNDS, REFINE_FACTOR if refine else 0,
                                          HELDOUT_SEED0 if seed0 is None else seed0)


def _outputs(study: Any, args: argparse.Namespace, url: str, pipe: Any = None, heldout: int = 0) -> None:
    from .studies import export_front, format_table, pareto_front

    print(format_table(study, pareto_front(study)))
    index = export_front(study, export_dir(args), _heldout(study, url, pipe, heldout, RUN_TIMING_ROUNDS, refine=False))
    print(f"exported {index}")
    _print_heldout(index)
    print(_write_report(study, report_path(args), url, pipe, export_dir=index.parent))


@command("run", "create or continue a study and search schedules", _run_args)
def cmd_run(args: argparse.Namespace) -> int:
    return _execute(args, resume=False)


@command("resume", "continue a stored study with its stored configuration", _run_args)
def cmd_resume(args: argparse.Namespace) -> int:
    return _execute(args, resume=True)


@command("worker", "join an existing study with its stored configuration and work until its budget is met",
         _worker_args)
def cmd_worker(args: argparse.Namespace) -> int:
    return _execute(args, resume=True)


# ------------------------------------------------------------------------------------------ outputs
def _export_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--out", help="output directory (default exports/STUDY)")
    p.add_argument("--heldout", type=int, default=0,
                   help="re-score the front and the anchors on this many held-out images (default 0: none)")
    p.add_argument("--timing-rounds", type=int,
                   help="interleaved timing rounds of the held-out speedups (default 9; close calls get 2x as many more)")
    p.add_argument("--heldout-seed", type=int,
                   help=f"first seed of the held-out images (default {HELDOUT_SEED0}); a fresh range confirms a choice made "
                        "after looking at held-out scores")


@command("export", "write the Pareto-optimal schedules as schedule JSON + index.json", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from .studies import export_front, open_study
    from .studies.resolve import resolve
    from .studies.study import stored_config

    url = _url(args)
    study = open_study(url, args.study)
    pipe = None
    if args.heldout:
        _set_threads(args)
        _, pipe = resolve({}, stored_config(study))
    index = export_front(study, export_dir(args), _heldout(study, url, pipe, args.heldout, args.timing_rounds,
                                                           seed0=args.heldout_seed))
    print(index)
    _print_heldout(index)
    return 0


def _print_heldout(index_path: Path) -> None:
    """The export's held-out rows as text, if it was re-scored."""
    from .studies.export import heldout_summary

    summary = heldout_summary(json.loads(Path(index_path).read_text()))
    if summary:
        print(summary)


def _report_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--out", help="HTML file (default reports/STUDY.html)")
    p.add_argument("--pictures", type=int, default=DEFAULT_PICTURES,
                   help=f"held-out seeds pictured under each exported schedule and anchor (default {DEFAULT_PICTURES}; "
                        "0: no pictures, no model loaded)")
    p.add_argument("--export", help="export directory whose held-out rows the front table shows (default exports/STUDY)")


def _write_report(study: Any, out: Path, url: str, pipe: Any = None, pictures: int = DEFAULT_PICTURES,
                  export_dir: Path | None = None) -> str:
    """Write the report; one line: its path, and why it shows no front when it has none."""
    from .studies import pareto_front
    from .studies.report import status_line, write_report

    if pictures and pipe is None and pareto_front(study):
        _set_threads(argparse.Namespace())
    path = write_report(study, out, pipe=pipe, pictures=pictures, export_dir=export_dir, storage=url)
    status = status_line(study, pareto_front(study))
    return f"report   {path}" + (f" ({status})" if status else "")


@command("report", "write a self-contained HTML report (offline plotly)", _report_args)
def cmd_report(args: argparse.Namespace) -> int:
    from .studies import open_study

    study = open_study(_url(args), args.study)
    print(_write_report(study, report_path(args), _url(args), pictures=args.pictures,
                        export_dir=Path(args.export or Path("exports") / args.study)))
    return 0


@command("show", "print the Pareto front as a table", _study_args)
def cmd_show(args: argparse.Namespace) -> int:
    from .studies import format_table, open_study, pareto_front

    study = open_study(_url(args), args.study)
    print(format_table(study, pareto_front(study)))
    return 0


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", required=True, help="schedule JSON or an export's index.json")
    p.add_argument("--index", type=int, help="which entry of an export index.json (default 0)")
    p.add_argument("--prompt", dest="prompts", action="append", required=True, help="prompt (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; the next ones count up")
    p.add_argument("--model", help="default: the schedule's meta.model, else embedded")
    p.add_argument("--steps", type=int, help="default: the schedule's meta.steps (other steps map its plan)")
    p.add_argument("--guidance", type=float, help="default: the schedule's meta.guidance, else 7.5")
    p.add_argument("--device", help="torch device (default cuda if available, else cpu)")
    p.add_argument("--out", default="images", help="output directory for PNG files (default ./images)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a step count or scheduler the schedule was not made for, instead of mapping its plan")


@command("apply", "generate images with a schedule", _apply_args)
def cmd_apply(args: argparse.Namespace) -> int:
    from .studies.apply import generate_with_schedule

    for path in generate_with_schedule(args.schedule, args.index, args.prompts, args.seed, args.out, model=args.model,
                                       steps=args.steps, guidance=args.guidance, device=args.device,
                                       strict=args.strict):
        print(path)
    return 0


# ------------------------------------------------------------------------------------------ entry point
def parser() -> argparse.ArgumentParser:
    from .options import annotate_bounds

    p = argparse.ArgumentParser(prog="datosearch", description="Search DaTo acceleration schedules for diffusers U-Nets.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, handler, help) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        add_arguments(sp)
        sp.set_defaults(func=handler)
        annotate_bounds(sp)
    return p


def check_input(args: argparse.Namespace) -> None:
    """Raise a `DatosearchError` (one sentence, exit 2) for the first bad input, before anything is loaded or
    written: an option out of range; a path the command would write that cannot be written (each is tried:
    no `OSError` from a path the user gave reaches the internal-error branch); a study database that is
    not an intact SQLite file."""
    from .atomic import check_writable
    from .options import check_options
    from .studies.storage import check_database, journal_path, sqlite_path, study_dir

    check_options(vars(args))
    url = _url(args) if getattr(args, "study", None) else None
    search = args.command in ("run", "resume", "worker")
    outputs = args.command in ("run", "resume") and not args.no_outputs
    db = url and (sqlite_path(url) or journal_path(url))
    writes = [(db, "the study database", False)] if search and db else []
    if search or (args.command == "export" and args.heldout):
        writes.append((study_dir(url, args.study), "the study's reference images", True))
    writes += [(export_dir(args), "the export", True)] if args.command == "export" or outputs else []
    writes += [(report_path(args), "the report", False)] if args.command == "report" or outputs else []
    writes += [(Path(args.out), "the images", True)] if args.command == "apply" else []
    for path, what, directory in writes:
        check_writable(path, what, directory=directory)
    if url is not None:
        check_database(url)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="datosearch: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        check_input(args)  # options in range, outputs writable, the database intact: before any work
        try:
            return args.func(args)
        finally:
            from .search import processes

            processes.enable(False)  # the generation worker processes, if any, stop here
    except (DatosearchError, ScheduleError) as exc:  # the user's own input: one sentence
        print(f"datosearch: error: {exc}", file=sys.stderr)
        return 2
    except SearchIncompleteError as exc:
        print(f"datosearch: search incomplete: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("datosearch: interrupted; `datosearch resume --study NAME` continues the study", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: show where it happened
        traceback.print_exc(file=sys.stderr)
        print(f"datosearch: internal error ({type(exc).__name__}): this is a bug in datosearch or a library it "
              f"uses, not a problem with your input; the traceback is above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
