"""``python -m benchmark <command>``: list, all, run, ablate, defects, tables, figures, report, profile, reproduce.

Bad input (an unknown name, a bad value, a missing dataset) prints one line saying what is wrong and how to fix it,
exits with status 2 and writes nothing. A run that fails is stored as ``failed``; the others go on, and the exit status
is then 1 with the failures listed at the end. This module parses and dispatches: what a suite command does is
:mod:`benchmark.suite`, what the tables, figures and report are is :mod:`benchmark.reporting`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from benchmark import data
from benchmark.cli import reproduce
from benchmark.cli.options import add_device_option
from benchmark.engine import budget
from benchmark.engine import device as devices
from benchmark.engine.discovery import discover
from benchmark.errors import BadInput, NothingPublished, disk_full
from benchmark.profiling import command as profiling
from benchmark.reporting.publish import publish
from benchmark.runner.local import install_sigterm
from benchmark.store import Store
from benchmark.suite import grid as grids
from benchmark.suite.request import DEFAULT_SEEDS, MAX_SEEDS, RUN_TIMEOUT_S, SuiteRequest, default_jobs
from benchmark.suite.session import run_suite


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        raise BadInput(message)


def _number(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _positive(text: str) -> int:
    value = _number(int, text, "a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seeds(text: str) -> int:
    value = _positive(text)
    if value > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} repetitions per configuration, got {value}")
    return value


def _base_seed(text: str) -> int:
    value = _number(int, text, "a whole number")
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2^31 - 1, got {value}")
    return value


def _width(text: str) -> float:
    value = _number(float, text, "a number of percentage points")
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"must be a half-width in pp between 0 and 100, got {text}")
    return value


def _factor(text: str) -> float:
    value = _number(float, text, "a number")
    if not 1 < value <= 10:
        raise argparse.ArgumentTypeError(f"must be above 1 and at most 10 (times the budget), got {text}")
    return value


def _seconds(text: str) -> float:
    value = _number(float, text, "a number of seconds")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def _duration(text: str) -> float:
    """``90s``, ``150m``, ``2h`` or ``1h30m`` -> seconds."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text.strip())
    if not text.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 90s, 150m, 2h or 1h30m")
    seconds = sum(float(v) * DURATION_UNITS[u] for v, u in zip(parts.groups(), "hms", strict=True) if v)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {text!r}")
    return seconds


def _grid_options(grid: Parser) -> None:
    grid.add_argument("--datasets", help="comma-separated dataset names (default: every dataset available here)")
    grid.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS,
                      help=f"repetitions per configuration (default {DEFAULT_SEEDS}, at most {MAX_SEEDS})")
    grid.add_argument("--until-ci", type=_width, metavar="W",
                      help="then keep adding paired repetitions to every comparison whose 95%% interval of Δ test "
                           "accuracy is wider than ±W pp (or has none), up to --max-seeds; finished runs are reused")
    grid.add_argument("--max-seeds", type=_seeds, help="most repetitions --until-ci gives a configuration (default 20)")
    grid.add_argument("--as-published", action="store_true",
                      help="each method as its notebook ran it (its notebook defects, data split and views)")
    grid.add_argument("--base-seed", type=_base_seed, default=0, help="base of every run's derived seed (default 0)")
    grid.add_argument("--preset", default="quick", help="smoke | quick | paper (default quick)")
    grid.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                      help="override a config field (METHOD.KEY=VALUE to target one method); repeatable")
    grid.add_argument("--jobs", type=_positive,
                      help="runs executed in parallel (local processes, or local Dask workers; with --device cuda, "
                           "GPU workers); default: the cores divided by --threads (cuda: 4 per GPU, within them)")
    add_device_option(grid)
    grid.add_argument("--tf32", action="store_true",
                      help="CUDA only: float32 products in TensorFloat-32 (faster, other numbers: part of each run's "
                           "identity); off by default")
    grid.add_argument("--run-timeout", type=_seconds, metavar="SECONDS",
                      help="time limit of one run; a run past it is recorded failed and the suite goes on "
                           f"(default by preset: {', '.join(f'{k} {v:g} s' for k, v in RUN_TIMEOUT_S.items())})")
    grid.add_argument("--stop-after", type=_duration, metavar="DURATION",
                      help="start no run expected to end after DURATION (90s, 150m, 2h, 1h30m; the forecast's "
                           "estimate of each run): the running ones finish, the "
                           "tables and report are written from what is stored, and the same command resumes; exit "
                           "status 0 unless a run failed")
    grid.add_argument("--no-batch-reps", action="store_true",
                      help="train every repetition on its own (by default the repetitions of a configuration with "
                           "small models train as one batch; the numbers are the same, bit for bit)")
    grid.add_argument("--threads", type=_positive, default=1,
                      help="torch threads per run (default 1; results are bit-identical only at equal threads)")
    grid.add_argument("--backend", choices=("local", "dask"), default="local",
                      help="local processes, or a Dask cluster (--scheduler ADDR, else a local cluster)")
    grid.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    grid.add_argument("--dry-run", action="store_true",
                      help="print the plan, which runs are cached and the expected time; train and write nothing")
    grid.add_argument("--no-probe", action="store_true",
                      help="estimate run times from the store's earlier runs and a FLOP count only, measuring no "
                           "steps before the plan (quicker; rougher for kinds never run here, and --stop-after "
                           "decides on that estimate)")
    grid.add_argument("--no-report", action="store_true",
                      help="train and store the runs only, without writing the tables, figures and report at the end "
                           "(minutes on a large store; for rounds of work: `report --out DIR` writes them after)")
    grid.add_argument("--data-root", type=Path, help="dataset folder (default $BENCHMARK_DATA_ROOT or ~/.cache/...)")
    grid.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    grid.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    grid = Parser(add_help=False)
    _grid_options(grid)
    parser = Parser(prog="python -m benchmark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("list", parents=[common], help="methods, baselines and datasets, and what is available")
    p.add_argument("--data-root", type=Path)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("all", parents=[common, grid], help="every method and baseline x datasets x repetitions")
    p.set_defaults(func=cmd_all)
    p = sub.add_parser("run", parents=[common, grid], help="methods (with their paired scratch students)")
    p.add_argument("method", nargs="+", help="one or more methods or baselines")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("ablate", parents=[common, grid],
                       help="vary a method's ablation factors one at a time around its defaults (or --param k=v1,v2)")
    p.add_argument("method")
    p.add_argument("--param", action="append", metavar="KEY=V1,V2", help="ablate KEY over these values; repeatable")
    p.add_argument("--grid", action="store_true", help="every combination of the factors' levels, not one at a time")
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("defects", parents=[common, grid],
                       help="each notebook defect of each method alone against the corrected default, paired")
    p.add_argument("method", nargs="*", help="methods (default: every method that declares notebook defects)")
    p.set_defaults(func=cmd_defects)
    p = sub.add_parser("audit", parents=[common, grid],
                       help="every method's and baseline's default configuration, and the same at --factor times its "
                            "training budget, on the datasets (default: every one available here) at the preset's "
                            "data budget, as the suite publishes them; the report's budget audit compares them")
    p.add_argument("--factor", type=_factor, default=3.0, help="how many times the budget (default 3)")
    p.set_defaults(func=cmd_audit)
    for name, parts, text in (("tables", ("tables",),
                               "rebuild <out>/published/tables from the stored runs (no training)"),
                              ("figures", ("figures",), "redraw <out>/published/figures from the stored runs"),
                              ("report", ("report",),
                               "write <out>/published/REPORT.md with its tables and figures, from the stored runs")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.set_defaults(func=cmd_publish, parts=parts)
    p = sub.add_parser("profile", parents=[common], help="timing profiles of every method's training step")
    profiling.add_arguments(p)
    add_device_option(p)
    p.set_defaults(func=profiling.command)
    p = sub.add_parser("reproduce", parents=[common], help="re-execute a stored run, compare its metrics bit for bit")
    reproduce.add_arguments(p)
    p.set_defaults(func=reproduce.command)
    return parser


# ---- commands ---------------------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    print("methods and baselines:")
    found = discover()
    width = max((len(name) for name in found), default=0)  # one column, however long a folder's name
    for info in found.values():
        if info.ok:
            factors = ", ".join(f"{k}={v}" for k, v in info.cls.ablations.items()) or "-"
            print(f"  {info.kind:8s} {info.name:{width}s} ok      ablations: {factors}")
        else:
            print(f"  {info.kind:8s} {info.name:{width}s} BROKEN  {info.error}")
    print("datasets:")
    for name in data.dataset_names():
        try:
            ok, where = data.availability(name, args.data_root)
        except Exception as exc:  # noqa: BLE001 - a dataset module that cannot even locate its files
            ok, where = False, f"its module fails: {exc}".splitlines()[0]
        print(f"  {name:14s} {'available' if ok else 'missing':9s} {where}")
    return 0


def cmd_all(args) -> int:
    methods = discover()
    broken = [i for i in methods.values() if not i.ok]
    for info in broken:
        print(f"benchmark: {info.kind} {info.name} cannot be loaded and is left out: {info.error}", file=sys.stderr)
    return _suite(args, [i for i in methods.values() if i.ok], methods, broken=broken)


def cmd_run(args) -> int:
    methods = discover()
    return _suite(args, [grids.lookup(methods, name) for name in dict.fromkeys(args.method)], methods)


def cmd_ablate(args) -> int:
    methods = discover()
    info = grids.lookup(methods, args.method)
    axes = grids.parse_params(args.param) if args.param else dict(info.cls.ablations)
    if not axes:
        raise BadInput(f"{info.name} declares no ablations: give --param KEY=V1,V2")
    return _suite(args, [info], methods, points={info.name: grids.ablation_points(axes, args.grid)})


def cmd_defects(args) -> int:
    methods = discover()
    if args.method:
        infos = [grids.lookup(methods, name) for name in dict.fromkeys(args.method)]
        empty = [i.name for i in infos if not i.cls.notebook_defects]
        if empty:
            raise BadInput(f"{', '.join(empty)} declare(s) no notebook defects")
    else:
        infos = [i for i in methods.values() if i.ok and i.cls.notebook_defects]
    return _suite(args, infos, methods, points={i.name: grids.defect_points(i) for i in infos})


def cmd_audit(args) -> int:
    methods = discover()
    infos = [i for i in methods.values() if i.ok]
    request = _request(args)
    grid = grids.build_grid(request, infos, methods, None, _warn)
    grid.points = {i.name: grids.audit_points(i, request, grid.overrides[i.name], args.factor) for i in infos}
    for name, points in grids.required_audit_points(infos, methods, request, grid.overrides, args.factor).items():
        grid.points[name] += [p for p in points if p not in grid.points[name]]
    return run_suite(grid, Store(args.out), published_with=declarations())


def cmd_publish(args) -> int:
    store = Store(args.out)
    published = publish(store, parts=args.parts, **declarations())
    for line in published.warnings:
        print(f"benchmark: warning: {line}", file=sys.stderr)
    if published.report is not None:
        print(f"report written to {published.report} ({len(published.figures.files)} figures)")
        _fill_readmes(store, published.results)
    elif published.figures is not None:
        figures = published.figures
        print(f"{len(figures.files)} figures written to {store.figures_dir} ({figures.seconds:.1f} s)")
    else:
        print(f"tables written to {published.summary.parent}")
    return 0


def _fill_readmes(store: Store, results) -> None:
    """The READMEs' generated result blocks, rewritten from ``results`` (what the report was written from) when the
    store reported on is the repository's results/."""
    root = Path(__file__).resolve().parents[2]
    if store.root.resolve() != (root / "results").resolve():
        return
    from benchmark.reporting import readme_blocks

    for path in readme_blocks.fill_readmes(root, results):
        print(f"results block(s) regenerated in {path.relative_to(root)}")


def declarations() -> dict:
    """What the methods declare that the tables and report name: their notebook defects, their as-published
    overrides and the fields whose default differs from the notebook's and changes the number."""
    loaded = [i for i in discover().values() if i.ok]
    return {"notebook_defects": {i.name: i.cls.notebook_defects for i in loaded},
            "declarations": {i.name: {"as_published": i.cls.as_published, "named_fields": tuple(i.cls.named_fields),
                                      "budget_fields": budget.budget_fields(i),
                                      "family": getattr(i.cls, "family", None)} for i in loaded}}


def _request(args) -> SuiteRequest:
    device = devices.choose(args.device)  # --device cuda without CUDA: one line, exit 2
    return SuiteRequest(
        preset=args.preset, seeds=args.seeds, base_seed=args.base_seed, datasets=args.datasets,
        sets=tuple(args.sets or ()), as_published=args.as_published, until_ci=args.until_ci,
        max_seeds=args.max_seeds, jobs=args.jobs or default_jobs(device.kind, device.gpus, args.threads),
        threads=args.threads, backend=args.backend, scheduler=args.scheduler, run_timeout=args.run_timeout,
        batch_reps=not args.no_batch_reps, data_root=args.data_root, download=args.download, dry_run=args.dry_run,
        progress=not args.no_progress, device=device.kind, gpus=device.gpus, tf32=args.tf32,
        stop_after=args.stop_after, probe=not args.no_probe, report=not args.no_report)


def _suite(args, infos, methods, points=None, broken=()) -> int:
    grid = grids.build_grid(_request(args), infos, methods, points, _warn)
    return run_suite(grid, Store(args.out), broken=list(broken), published_with=declarations())


def _warn(line: str) -> None:
    print(f"benchmark: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    install_sigterm()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except BadInput as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    except NothingPublished as exc:  # what could be written was; the part asked for is missing
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `python -m benchmark list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a write that failed after the checks: what is stored stays stored
        if disk_full(exc) is not None:  # wherever it was (a worker's record or checkpoint, a table): one line
            print(f"benchmark: error: {disk_full(exc)} (every run stored so far is kept)", file=sys.stderr)
            return 1
        where = f": {exc.filename}" if exc.filename else ""
        print(f"benchmark: error: {exc.strerror or exc}{where} (every run stored so far is kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted: the workers are stopped and every finished run is stored; the same command "
              "goes on from there", file=sys.stderr)
        return 130
