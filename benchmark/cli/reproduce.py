"""``python -m benchmark reproduce RUN_ID``: re-execute a stored run from its record and compare every stored metric
bit for bit.

The run is rebuilt from what its record says it is (method, dataset, preset, repetition, resolved configuration, seed
and required runs), refused when the code it executes is no longer the code it was made with (its id would not be
this one), and trained into a temporary store: the stored record is never touched. A run it requires (the shared
teacher) is reused from the store's cache when its checkpoint loads, else trained again too, and then its metrics
are compared as well.

A CPU run's last bits depend on the CPU's kernels (its model, torch's CPU capability, the MKL and oneDNN versions:
each record's ``provenance``). When the record's CPU is another than this machine's, or unrecorded, the first line
says so, and when metrics differ the largest difference of each final metric is given (accuracies in percentage
points), so a reader can tell another CPU's rounding from another result.

Exit status (:data:`STATUSES`): 0 every metric identical; 1 some differ (listed) on the same CPU, or the final test
accuracies moved by more than one test example, or the reproduction failed; 2 the run cannot be reproduced here
(one line); 3 some differ, the record was made on another (or an unrecorded) CPU, and every final test accuracy
agrees within one test example (|difference| <= 1 / test examples).

A run is reproduced on its own kind of device: a CUDA run needs a GPU (``--device cuda:N`` picks which; the same
model of GPU gives the same numbers), a CPU run the CPU. On a GPU a run's numbers depend on the repetitions it was
packed with (its record's ``batch``), so those are trained again with it, as one batch, and compared too; on a CPU
they do not (bit for bit, tested), and the run trains alone. A required run whose checkpoint does not load is
trained again alone.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from benchmark.cli.options import add_device_option
from benchmark.contract import required_method
from benchmark.engine import device as devices
from benchmark.engine.code import code_hash, run_code
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings, dataset_for, execute_task
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.errors import BadInput, DatasetUnavailable
from benchmark.runner.runner import run_plan
from benchmark.runner.status import checkpoint_loads, identity_problem
from benchmark.store import Store, provenance
from benchmark.store.provenance import describe_cpu, same_cpu

STATUSES = {0: "identical: every metric bit for bit",
            1: "different (or the reproduction failed)",
            2: "cannot be reproduced here (one line says why)",
            3: "another CPU (or an unrecorded one): metrics differ, final test accuracies within one test example"}
EPILOG = "exit status: " + "; ".join(f"{code} {what}" for code, what in STATUSES.items())
FINAL_ACCURACY = "test_acc"  # the official number of every classifier role


def add_arguments(p) -> None:
    p.epilog = EPILOG
    p.add_argument("run_id", help="the id of a stored run (the name of its file under <out>/runs)")
    p.add_argument("--data-root", type=Path, help="dataset folder (default $BENCHMARK_DATA_ROOT or ~/.cache/...)")
    add_device_option(p)


RUN_ID = re.compile(r"[0-9a-f]{16}")
ID_PREFIX = re.compile(r"[0-9a-f]{1,16}")


def resolve_id(store: Store, text: str) -> str:
    """The full id of the stored run ``text`` names: 16 hexadecimal digits, or a unique prefix of a stored id.
    Anything else is not an id (BadInput): no path is ever built from it."""
    if not ID_PREFIX.fullmatch(text):
        raise BadInput(f"{text[:40]!r} is not a run id: 16 hexadecimal digits, or a unique prefix of one "
                       "(published/tables/runs.csv lists the stored runs)")
    if len(text) == 16:
        return text
    names = sorted(p.stem for p in store.runs_dir.glob("*.json")) if store.runs_dir.is_dir() else []
    matches = [n for n in names if RUN_ID.fullmatch(n) and n.startswith(text)]
    if len(matches) != 1:
        which = "no stored run" if not matches else f"{len(matches)} stored runs ({', '.join(matches[:3])}, ...)"
        raise BadInput(f"run id prefix {text!r} matches {which}: give more digits")
    return matches[0]


def command(args) -> int:
    store = Store(args.out)
    methods = discover()
    spec, record = stored_run(store, resolve_id(store, args.run_id))
    if record["status"] != "ok":
        raise BadInput(f"run {spec.run_id} is stored as {record['status']}: it has no metrics to compare")
    threads = (record.get("provenance") or {}).get("threads") or 1  # bit-identical only at equal threads
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024:
        raise BadInput(f"run {spec.run_id}: its record's thread count {threads!r} is not a number of threads")
    gpu = gpu_for(spec, args.device)
    batch = batch_of(spec, record, store)
    here = provenance()
    other_cpu = spec.device == "cpu" and not same_cpu(record.get("provenance"), here)
    if other_cpu:  # said first: what follows is read in its light
        print(f"run {spec.run_id} was made on {describe_cpu(record.get('provenance'))}; this machine is "
              f"{describe_cpu(here)}: its last bits can differ here without the result being another")
    differences, compared, deltas = [], 0, {}
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        settings = Settings(store=Store(tmp), data_root=args.data_root, threads=threads, batch_reps=1, gpu=gpu)
        retrained = list({s.run_id: s for member in batch for s in stage(member, store, settings, methods)}.values())
        run_plan(retrained, settings, backend="inprocess", gpus=())
        for _ in execute_task(batch, settings, methods):
            pass
        for s in retrained + batch:
            new = settings.store.read_run(s.run_id)
            if new is None or new["status"] != "ok":
                error = (new or {}).get("error") or "no record was written"
                print(f"run {s.run_id} ({s.method}): the reproduction failed: {error.strip().splitlines()[0]}")
                return 1
            stored = store.read_run(s.run_id)["metrics"]
            compared += len(stored)
            differences += [f"  {s.method} {line}" for line in compare(stored, new["metrics"])]
            for metric, delta in final_deltas(stored, new["metrics"]).items():
                deltas[metric] = max(deltas.get(metric, 0.0), delta)
        n_test = dataset_for(spec, settings).size("test") if differences else 0
    what = f"{spec.method} on {spec.dataset}, rep {spec.rep}, {spec.variant}"
    if differences:
        print(f"run {spec.run_id} ({what}): {len(differences)} of {compared} metrics differ (stored -> reproduced)")
        print("largest difference of each final metric: " + ", ".join(
            f"{metric} {_amount(metric, delta)}" for metric, delta in sorted(deltas.items())))
        within = within_one_example(deltas, n_test)
        print(f"final test accuracies {'agree within' if within else 'differ by more than'} one test example "
              f"(1/{n_test} = {100 / max(n_test, 1):.3g} pp)")
        print("\n".join(differences))
        return 3 if other_cpu and within else 1
    reused = f"; {', '.join(spec.requires)} reused from the cache" if spec.requires and not retrained else ""
    packed = f"; trained with the {len(batch) - 1} repetition(s) it was packed with" if len(batch) > 1 else ""
    print(f"run {spec.run_id} ({what}) reproduced: all {compared} metrics identical, bit for bit{reused}{packed}")
    return 0


def final_deltas(stored: list, new: list) -> dict[str, float]:
    """Per final metric (epoch -1) in both lists: the largest |stored - reproduced| over roles and occurrences."""
    def finals(rows):
        out: dict[tuple, float] = {}
        for role, epoch, metric, value in rows:
            if epoch == -1 and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault((role, metric), value)
        return out

    a, b = finals(stored), finals(new)
    deltas: dict[str, float] = {}
    for key in a.keys() & b.keys():
        deltas[key[1]] = max(deltas.get(key[1], 0.0), abs(float(a[key]) - float(b[key])))
    return deltas


def within_one_example(deltas: dict[str, float], n_test: int) -> bool:
    """Whether the final test accuracy moved by at most one of ``n_test`` examples (a float's rounding allowed)."""
    return n_test > 0 and deltas.get(FINAL_ACCURACY, 0.0) <= 1 / n_test + 1e-12


def _amount(metric: str, delta: float) -> str:
    return f"{100 * delta:.3g} pp" if "acc" in metric.split("_") else f"{delta:.3g}"


def gpu_for(spec: RunSpec, wanted: str) -> int | None:
    """The GPU that reproduces ``spec`` (None: the CPU, or the current GPU); BadInput when ``--device`` names
    another kind than the run's, or the run needs a GPU this machine does not have."""
    if wanted.strip().lower() == "auto":
        if spec.device == "cuda" and not devices.cuda_count():
            raise BadInput(f"run {spec.run_id} was trained on CUDA and this machine has no CUDA device: reproduce it "
                           "on a GPU of the same model")
        return None
    choice = devices.choose(wanted)
    if choice.kind != spec.device:
        raise BadInput(f"run {spec.run_id} was trained on {spec.device}: --device {wanted} cannot reproduce it "
                       "(a run's numbers are those of its kind of device)")
    return choice.gpus[0] if choice.gpus else None


def batch_of(spec: RunSpec, record: dict, store: Store) -> list[RunSpec]:
    """What re-executes ``spec``: itself, or on CUDA the repetitions its record says it was packed with (in their
    order), each a valid stored record; BadInput naming one that is not."""
    batch = record.get("batch") or {}
    ids = batch.get("run_ids") or [spec.run_id]
    if spec.device != "cuda" or len(ids) < 2:
        return [spec]
    mates = []
    for run_id in ids:
        try:
            mates.append(spec if run_id == spec.run_id else stored_run(store, run_id)[0])
        except BadInput as exc:
            raise BadInput(f"run {spec.run_id} trained packed with run {run_id} on CUDA (its numbers depend on "
                           f"them), which cannot be read: {exc}") from None
    return mates


def stored_run(store: Store, run_id: str) -> tuple[RunSpec, dict]:
    """The spec a stored record describes, and the record; BadInput unless the record is valid and is that run."""
    if not RUN_ID.fullmatch(str(run_id)):
        raise BadInput(f"{str(run_id)[:40]!r} is not a run id (16 hexadecimal digits)")
    record = store.read_run(run_id)
    if record is None:
        raise BadInput(f"no valid record of run {run_id!r} under {store.runs_dir}: `python -m benchmark tables` "
                       "lists the stored runs in published/tables/runs.csv")
    try:
        spec = RunSpec.from_dict(record)
    except TypeError as exc:
        raise BadInput(f"run {run_id}: its record lacks what identifies a run ({exc})") from None
    problem = identity_problem(record, spec) or (None if spec.run_id == run_id else "its id is another run's")
    if problem:
        raise BadInput(f"run {run_id}: {problem}")
    return spec, record


def stage(spec: RunSpec, store: Store, settings: Settings, methods: dict[str, MethodInfo]) -> list[RunSpec]:
    """Check that ``spec`` runs the code it was made with, put the runs it requires into the temporary store
    (record and checkpoint, when the checkpoint loads) and return those to train again, required ones first."""
    changed = code_changes(spec, settings, methods)
    if changed:
        commit = ((store.read_run(spec.run_id) or {}).get("provenance") or {}).get("git_commit")
        at = f" (it was made at commit {commit[:12]})" if commit else ""
        raise BadInput(f"run {spec.run_id} ({spec.method}) cannot be reproduced: the code it executes changed since "
                       f"it was stored ({', '.join(changed)}){at}")
    again = settings.store
    retrain: list[RunSpec] = []
    for name, run_id in spec.requires.items():
        try:
            needed, _ = stored_run(store, run_id)
        except BadInput as exc:
            raise BadInput(f"run {spec.run_id} requires a {name} run: {exc}") from None
        checkpoint = store.cache_path(required_method(name), run_id)  # "born_again#2": a born_again run
        if checkpoint.is_file() and checkpoint_loads(checkpoint) is None:
            again.write_run(store.read_run(run_id))
            again.cache_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, again.cache_path(required_method(name), run_id))
        else:
            retrain += stage(needed, store, settings, methods) + [needed]
    return retrain


def code_changes(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo]) -> list[str]:
    """The parts of the code ``spec`` executes that differ from the code it was made with (none: reproducible)."""
    info = methods.get(spec.method)
    if info is None or not info.ok:
        return [f"method {spec.method} is {'broken' if info else 'gone'}"]
    cfg = config_from_dict(info, spec.config)
    try:
        data = dataset_for(spec, settings)
    except DatasetUnavailable as exc:
        raise BadInput(str(exc)) from None
    archs = {role.arch for role in info.cls().roles(cfg, data).values()}
    try:
        now = run_code(info, archs, spec.dataset)
    except KeyError:  # an architecture it built is no longer registered
        return ["architectures"]
    if code_hash(now) == spec.source_hash:
        return []
    was = spec.code or {}
    changed = [part for part in ("method", "dataset", "harness") if now[part] != was.get(part)]
    arch_was = was.get("architectures") or {}
    changed += [f"architecture {a}" for a, h in now["architectures"].items() if arch_was.get(a) != h]
    return changed or ["its code"]


def compare(stored: list, new: list) -> list[str]:
    """One line per metric whose value differs in any bit (or is only on one side), keyed by role, epoch, metric
    and occurrence."""
    def keyed(rows):
        out, seen = {}, {}
        for role, epoch, metric, value in rows:
            n = seen[(role, epoch, metric)] = seen.get((role, epoch, metric), -1) + 1
            out[(role, epoch, metric, n)] = value
        return out

    a, b = keyed(stored), keyed(new)
    lines = []
    for key in list(a) + [k for k in b if k not in a]:
        x, y = a.get(key, "absent"), b.get(key, "absent")
        if _bits(x) != _bits(y):
            role, epoch, metric, _ = key
            lines.append(f"{role} epoch {epoch} {metric}: {x!r} -> {y!r}")
    return lines


def _bits(value):
    """A value's exact identity: the float's bits (so -0.0 differs from 0.0), or the value itself."""
    return float(value).hex() if isinstance(value, (int, float)) and not isinstance(value, bool) else value
