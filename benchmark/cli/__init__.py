"""``python -m benchmark <command>``: list, all, run, ablate, defects, tables, figures, report, profile, reproduce.

Bad input (an unknown name, a bad value, a missing dataset) prints one line saying what is wrong and how to fix it,
exits with status 2 and writes nothing. A run that fails is stored as ``failed``; the others go on, and the exit status
is then 1 with the failures listed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import uuid
from pathlib import Path

from benchmark import data as datasets
from benchmark.engine import config as configuration
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings, is_done, run_plan
from benchmark.engine.plan import order, plan
from benchmark.errors import BadInput, NothingPublished
from benchmark.store.store import Store


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        raise BadInput(message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


DEFAULT_SEEDS = 5  # repetitions per configuration: the usual minimum for a claim with an interval
MAX_SEEDS = 100


def _seeds(text: str) -> int:
    value = _positive(text)
    if value > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} repetitions per configuration, got {value}")
    return value


def _width(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percentage points") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"must be a half-width in pp between 0 and 100, got {text}")
    return value


# Default time limit of one run per preset: far above what a healthy run takes on a 2-core machine (the longest quick
# runs take minutes), so that only a hung or runaway run reaches it.
RUN_TIMEOUT_S = {"smoke": 600.0, "quick": 3600.0, "paper": 6 * 3600.0}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    grid = Parser(add_help=False)
    grid.add_argument("--datasets", help="comma-separated dataset names (default: every dataset available here)")
    grid.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS,
                      help=f"repetitions per configuration (default {DEFAULT_SEEDS})")
    grid.add_argument("--until-ci", type=_width, metavar="W",
                      help="then keep adding paired repetitions to every comparison whose 95%% interval of Δ test "
                           "accuracy is wider than ±W pp (or has none), up to --max-seeds; finished runs are reused")
    grid.add_argument("--max-seeds", type=_seeds, default=20,
                      help="most repetitions --until-ci gives a configuration (default 20)")
    grid.add_argument("--as-published", action="store_true",
                      help="each method as its notebook ran it (its notebook defects, data split and views)")
    grid.add_argument("--base-seed", type=int, default=0, help="base of every run's derived seed (default 0)")
    grid.add_argument("--preset", default="quick", help="smoke | quick | paper (default quick)")
    grid.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                      help="override a config field (METHOD.KEY=VALUE to target one method); repeatable")
    grid.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1,
                      help="runs executed in parallel (local processes, or local Dask workers); default: the cores")
    grid.add_argument("--run-timeout", type=_seconds, metavar="SECONDS",
                      help="time limit of one run; a run past it is recorded failed and the suite goes on "
                           f"(default by preset: {', '.join(f'{k} {v:g} s' for k, v in RUN_TIMEOUT_S.items())})")
    grid.add_argument("--no-batch-reps", action="store_true",
                      help="train every repetition on its own (by default the repetitions of a configuration with "
                           "small models train as one batch; the numbers are the same, bit for bit)")
    grid.add_argument("--threads", type=_positive, default=1,
                      help="torch threads per run (default 1; results are bit-identical only at equal threads)")
    grid.add_argument("--backend", choices=("local", "dask"), default="local",
                      help="local processes, or a Dask cluster (--scheduler ADDR, else a local cluster)")
    grid.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    grid.add_argument("--dry-run", action="store_true", help="print the plan and which runs are cached; train nothing")
    grid.add_argument("--data-root", type=Path, help="dataset folder (default $BENCHMARK_DATA_ROOT or ~/.cache/...)")
    grid.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    grid.add_argument("--no-progress", action="store_true", help="no progress bar")

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
    p = sub.add_parser("tables", parents=[common], help="rebuild results/tables from the stored runs (no training)")
    p.set_defaults(func=cmd_tables)
    p = sub.add_parser("figures", parents=[common], help="redraw results/figures from the stored runs")
    p.set_defaults(func=cmd_figures)
    p = sub.add_parser("report", parents=[common],
                       help="write results/REPORT.md: the answer per dataset, tables and figures from the stored runs")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("profile", parents=[common], help="timing profiles of every method's training step")
    from benchmark.profiling.command import add_arguments as add_profile_arguments

    add_profile_arguments(p)
    p.set_defaults(func=cmd_profile)
    p = sub.add_parser("reproduce", parents=[common], help="re-execute a stored run, compare its metrics bit for bit")
    from benchmark.cli import reproduce

    reproduce.add_arguments(p)
    p.set_defaults(func=reproduce.command)
    return parser


# ---- commands ---------------------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    methods = discover()
    print("methods and baselines:")
    for info in methods.values():
        if info.ok:
            grid = ", ".join(f"{k}={v}" for k, v in info.cls.ablations.items()) or "-"
            print(f"  {info.kind:8s} {info.name:18s} ok      ablations: {grid}")
        else:
            print(f"  {info.kind:8s} {info.name:18s} BROKEN  {info.error}")
    print("datasets:")
    for name in datasets.DATASET_NAMES:
        ok, where = datasets.availability(name, args.data_root)
        print(f"  {name:14s} {'available' if ok else 'missing':9s} {where}")
    return 0


def cmd_all(args) -> int:
    methods = discover()
    broken = [i for i in methods.values() if not i.ok]
    for info in broken:
        print(f"{info.kind} {info.name} cannot be loaded and is left out: {info.error}", file=sys.stderr)
    infos = [i for i in methods.values() if i.ok]
    return _run_grid(args, infos, methods, broken=broken)


def cmd_run(args) -> int:
    methods = discover()
    return _run_grid(args, [_lookup(methods, name) for name in dict.fromkeys(args.method)], methods)


def cmd_ablate(args) -> int:
    methods = discover()
    info = _lookup(methods, args.method)
    if args.param:
        axes = {}
        for item in args.param:
            key, sep, values = item.partition("=")
            if not sep or not values:
                raise BadInput(f"--param takes KEY=V1,V2,..., got {item!r}")
            axes[key.strip()] = [v.strip() for v in values.split(",")]
    else:
        axes = dict(info.cls.ablations)
        if not axes:
            raise BadInput(f"{info.name} declares no ablations: give --param KEY=V1,V2")
    return _run_grid(args, [info], methods, grids={info.name: ablation_points(axes, args.grid)})


def ablation_points(axes: dict[str, list], grid: bool = False) -> list[dict]:
    """The configurations of an ablation: the defaults, then each factor's levels one at a time with every other
    factor at its default (``grid``: the full product of the levels). A level equal to the default is the default
    configuration itself (the planner plans it once)."""
    if grid:
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    return [{}] + [{key: value} for key, values in axes.items() for value in values]


def cmd_defects(args) -> int:
    methods = discover()
    if args.method:
        infos = [_lookup(methods, name) for name in dict.fromkeys(args.method)]
        empty = [i.name for i in infos if not i.cls.notebook_defects]
        if empty:
            raise BadInput(f"{', '.join(empty)} declare(s) no notebook defects")
    else:
        infos = [i for i in methods.values() if i.ok and i.cls.notebook_defects]
    grids = {i.name: ablation_points({field: [value] for field, (value, _) in i.cls.notebook_defects.items()})
             for i in infos}
    return _run_grid(args, infos, methods, grids=grids)


def cmd_tables(args) -> int:
    published = _publish(Store(args.out), ("tables",))
    print(f"tables written to {published.summary.parent}")
    return 0


def cmd_profile(args) -> int:
    from benchmark.profiling.command import command

    return command(args)


def cmd_figures(args) -> int:
    store = Store(args.out)
    drawn = _publish(store, ("figures",)).figures
    print(f"{len(drawn.files)} figures written to {store.figures_dir} ({drawn.seconds:.1f} s)")
    return 0


def cmd_report(args) -> int:
    published = _publish(Store(args.out), ("report",))
    print(f"report written to {published.report} ({len(published.figures.files)} figures)")
    return 0


def _publish(store: Store, parts: tuple[str, ...], methods: dict[str, MethodInfo] | None = None):
    """``benchmark.reporting.publish`` (the report brings the tables and figures) with what the methods declare
    (notebook defects, as-published overrides, named fields: every part groups and names runs by them); its
    warnings on stderr."""
    from benchmark.reporting.publish import publish

    loaded = [i for i in (discover() if methods is None else methods).values() if i.ok]
    defects = {i.name: i.cls.notebook_defects for i in loaded}
    declarations = {i.name: {"as_published": i.cls.as_published,
                             "named_fields": tuple(getattr(i.cls, "named_fields", ()))} for i in loaded}
    published = publish(store, parts, defects, declarations)
    for line in published.warnings:
        print(f"warning: {line}", file=sys.stderr)
    return published


# ---- helpers ----------------------------------------------------------------------------------------------------

def _lookup(methods: dict[str, MethodInfo], name: str) -> MethodInfo:
    if name not in methods:
        raise BadInput(f"unknown method {name!r}: `python -m benchmark list` shows {', '.join(methods)}")
    info = methods[name]
    if not info.ok:
        raise BadInput(f"{info.kind} {name!r} cannot be loaded: {info.error}")
    return info


def select_datasets(args) -> dict[str, datasets.Dataset]:
    """The datasets of the grid, loaded at the preset's budget: a corrupt or missing dataset is bad input, found
    before any run (their shapes and sizes also adapt the configurations)."""
    loaded = {}
    for name in _candidate_datasets(args):
        try:
            loaded[name] = datasets.load_dataset(name, args.data_root, args.download,
                                                 **configuration.DATA_PRESETS[args.preset])
        except datasets.DatasetUnavailable as exc:
            raise BadInput(str(exc)) from None
    return loaded


def _candidate_datasets(args) -> list[str]:
    if args.datasets:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        for name in names:
            if not datasets.is_known(name):
                raise BadInput(f"unknown dataset {name!r}: choose from {', '.join(datasets.DATASET_NAMES)} "
                               "(or a superclass task such as digits:2x5)")
            ok, fix = datasets.availability(name, args.data_root)
            if not ok and not args.download:
                raise BadInput(fix)
        return names
    chosen = []
    for name in datasets.DATASET_NAMES:
        ok, fix = datasets.availability(name, args.data_root)
        if ok:
            chosen.append(name)
        else:
            print(f"skipping dataset {name}: {fix}", file=sys.stderr)
    return chosen


def split_overrides(sets: list[str] | None, infos: list[MethodInfo]) -> dict[str, dict[str, str]]:
    """``--set`` values per method: ``KEY=V`` goes to every selected method that has KEY, ``METHOD.KEY=V`` to one."""
    per: dict[str, dict[str, str]] = {i.name: {} for i in infos}
    names = {i.name: i for i in infos}
    for key, value in configuration.parse_assignments(sets).items():
        scope, dot, field = key.rpartition(".")
        if dot:
            if scope not in names:
                raise BadInput(f"--set {key}: {scope!r} is not among the selected methods ({', '.join(names)})")
            per[scope][field] = value
            continue
        takers = [n for n, i in names.items() if key in configuration.field_types(i.cls.Config)]
        if not takers:
            raise BadInput(f"--set {key}: no selected method has a parameter {key!r}")
        if len(names) == 1:
            takers = list(names)
        for n in takers:
            per[n][key] = value
    return per


def _run_grid(args, infos: list[MethodInfo], methods: dict[str, MethodInfo], grids=None, broken=()) -> int:
    if args.preset not in configuration.PRESETS:
        raise BadInput(f"unknown preset {args.preset!r}: use one of {', '.join(configuration.PRESETS)}")
    if args.scheduler and args.backend != "dask":
        raise BadInput("--scheduler goes with --backend dask")
    if args.until_ci is not None and args.max_seeds < args.seeds:
        raise BadInput(f"--max-seeds {args.max_seeds} is below --seeds {args.seeds}")
    loaded = select_datasets(args)
    if not loaded:
        raise BadInput("no dataset is available: see `python -m benchmark list` for how to get one")
    overrides = split_overrides(args.sets, infos)
    if args.as_published:
        overrides = {name: {**methods[name].cls.as_published, **values} for name, values in overrides.items()}

    def planned(chosen, reps: int, rep_start: int = 0, chosen_grids=grids):
        return plan(chosen, data=loaded, reps=reps, rep_start=rep_start, preset=args.preset,
                    base_seed=args.base_seed, overrides=overrides, grids=chosen_grids, methods=methods)

    specs = planned(infos, args.seeds)  # validates every value before anything is written
    settings = Settings(out=args.out, data_root=args.data_root, download=args.download, threads=args.threads,
                        suite=uuid.uuid4().hex, batch_reps=1 if args.no_batch_reps else Settings.batch_reps)
    if args.dry_run:
        return _dry_run(specs, settings, methods)
    client = None
    if args.backend == "dask" and (args.until_ci is not None
                                   or any(not is_done(s, settings.store, methods) for s in specs)):
        from benchmark.runner import dask_backend

        client = dask_backend.connect(args.scheduler, args.jobs)  # unreachable: BadInput before anything is written
    try:
        settings.store.open()  # an unwritable --out: one line before anything trains
        outcomes = [_execute(args, specs, settings, methods, client)]
        if args.until_ci is not None:
            outcomes += _until_ci(args, infos, grids, planned, settings, methods, client)
    finally:
        if client is not None:
            dask_backend.close(client)
    published = _publish(settings.store, ("report",), methods)
    total = sum(n for _, n in outcomes)
    records = [r for o, _ in outcomes for r in o.records]
    trained = sum(r["status"] == "ok" for r in records)
    skipped = sum(r["status"] == "skipped" for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    cached = sum(o.cached for o, _ in outcomes)
    if cached == total:
        print(f"all {total} runs were cached; nothing trained")
    else:
        print(f"{total} runs: {trained} trained, {cached} cached, {skipped} skipped, {len(failed)} failed")
    print(f"tables: {published.summary}")
    if failed or broken:
        print("failures:")
        for r in failed:
            print(f"  {r['method']} {r['dataset']} rep={r['rep']} {r['variant']} ({r['run_id']}): {r['error']}")
        for info in broken:
            print(f"  {info.name}: cannot be loaded: {info.error}")
        return 1
    return 0


def _dry_run(specs, settings: Settings, methods) -> int:
    done = {s.run_id for s in specs if is_done(s, settings.store, methods, _warn)}
    for s in specs:
        state = "cached" if s.run_id in done else "to run"
        print(f"{state:7s} {s.run_id} {s.method:18s} {s.dataset:14s} rep={s.rep} {s.variant}")
    print(f"{len(specs)} runs planned: {len(done)} cached, {len(specs) - len(done)} to run")
    return 0


def _execute(args, specs, settings: Settings, methods, client=None):
    """Train what of ``specs`` is not stored yet: (``run_plan``'s outcome, how many runs were planned)."""
    todo = sum(not is_done(s, settings.store, methods, _warn) for s in specs)
    bar = None
    if todo and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=todo, desc="runs", unit="run", file=sys.stderr)
    try:
        timeout = args.run_timeout or RUN_TIMEOUT_S[args.preset]
        outcome = run_plan(specs, settings, jobs=args.jobs, progress=bar, backend=args.backend, client=client,
                           timeout_s=timeout)
    finally:
        if bar is not None:
            bar.close()
    return outcome, len(specs)


def _until_ci(args, infos, grids, planned, settings: Settings, methods, client=None) -> list:
    """Rounds of more repetitions for the comparisons still wider than ±W pp (``benchmark.reporting.precision``),
    each round planned cell by cell (a method configuration on a dataset, with its scratch students and the runs it
    requires), until every comparison is narrow enough or at ``--max-seeds``."""
    from benchmark.reporting import precision

    outcomes, tried = [], set()
    while True:
        want = precision.next_reps(settings.store.iter_runs(), args.until_ci, args.max_seeds)
        specs: dict[str, object] = {}
        for info in infos:
            for point in (grids or {}).get(info.name) or [{}]:
                first = planned([info], 1, 0, {info.name: [point]})
                for spec in (s for s in first if s.method == info.name):
                    n = want.get(precision.Cell(info.name, spec.variant, spec.dataset, spec.preset), 0)
                    if n:
                        more = planned([info], n, 0, {info.name: [point]})
                        specs.update((s.run_id, s) for s in more if s.dataset == spec.dataset)
        todo = [s for s in specs.values() if not is_done(s, settings.store, methods)]
        if not todo or tried.issuperset(s.run_id for s in todo):  # nothing new, or only runs that failed already
            break
        tried.update(s.run_id for s in todo)
        print(f"until-ci: {len(want)} configurations wider than ±{args.until_ci:g} pp; {len(todo)} more runs",
              file=sys.stderr)
        outcomes.append(_execute(args, order(list(specs.values())), settings, methods, client))
    for cell in precision.open_at_max(settings.store.iter_runs(), args.until_ci, args.max_seeds):
        print(f"until-ci: {cell.method} {cell.variant} on {cell.dataset} is still wider than ±{args.until_ci:g} pp "
              f"at {args.max_seeds} repetitions", file=sys.stderr)
    return outcomes


def _warn(line: str) -> None:
    print(f"benchmark: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from benchmark.runner.local import install_sigterm

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
    except OSError as exc:  # a write that failed after the checks (a full disk): what is stored stays stored
        where = f": {exc.filename}" if exc.filename else ""
        print(f"benchmark: error: {exc.strerror or exc}{where} (every run stored so far is kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted: the workers are stopped and every finished run is stored; the same command "
              "goes on from there", file=sys.stderr)
        return 130
