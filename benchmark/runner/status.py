"""Which planned runs are already in the store: decided once per command (:func:`partition`), before the runner
starts, so that the command's count of cached runs and what the runner trains are the same answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchmark.engine.context import checkpoint_mismatch
from benchmark.engine.discovery import MethodInfo
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.errors import one_line
from benchmark.store import Store, load_state
from benchmark.store.provenance import describe_cpu, provenance, same_cpu


def checkpoint_loads(path: Path, record: dict | None = None) -> str | None:
    """None if the checkpoint at ``path`` loads as one written by the run its name says (``<name>-<run id>.pt``)
    and, given that run's ``record``, holds the architectures it declares; else why not (one line). A checkpoint of
    another run (copied over this one) or of an older format counts as missing: its run is trained again."""
    try:
        state = load_state(path)
    except Exception as exc:  # truncated, garbage, or refused by weights_only: all mean "retrain it"
        return one_line(exc)
    problem = checkpoint_mismatch(state, path.stem.rpartition("-")[2], record)
    return None if problem is None else f"it {problem}"


def identity_problem(record: dict, spec: RunSpec) -> str | None:
    """None if what ``record`` says it is (method, configuration, dataset, repetition, code, required runs)
    hashes to ``spec``'s id, else why not: a record edited or copied under another run's name is not that run."""
    try:
        if RunSpec.from_dict(record).run_id == spec.run_id:
            return None
    except (TypeError, ValueError):  # a field the id needs is missing, or not JSON
        pass
    return f"what it records is not run {spec.run_id} (its identity fields hash to another id)"


def finished(spec: RunSpec, store: Store, methods: dict[str, MethodInfo]) -> tuple[bool, str | None]:
    """(finished, checkpoint problem): whether a valid record of this very run (else it is set aside) ended ok or
    skipped, and, for a finished run whose models other runs load, why its checkpoint cannot be loaded ("is
    missing", "does not load (...)"); None when it can, or when the run saves none."""
    record = store.read_run(spec.run_id)
    if record is None:
        return False, None
    problem = identity_problem(record, spec)
    if problem:
        store.set_aside(store.run_path(spec.run_id), problem)
        return False, None
    if record["status"] not in ("ok", "skipped"):
        return False, None
    info = methods.get(spec.method)
    if record["status"] == "ok" and info is not None and info.ok:
        if info.cls().saves_models(config_from_dict(info, spec.config)):
            path = store.cache_path(spec.method, spec.run_id)
            if not path.is_file():
                return True, "is missing"
            problem = checkpoint_loads(path, record)
            if problem:
                return True, f"does not load ({problem})"
    return True, None


def is_done(spec: RunSpec, store: Store, methods: dict[str, MethodInfo]) -> bool:
    """Finished, with its checkpoint loadable when it saves one (:func:`finished`)."""
    done, problem = finished(spec, store, methods)
    return done and problem is None


def partition(specs: list[RunSpec], store: Store, methods: dict[str, MethodInfo],
              warn: Callable[[str], None] | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
    """(cached, todo), each in the given order. A finished run whose checkpoint is missing (or does not load) is
    trained again only when a run to be trained loads it (``warn`` gets one line saying so): with every dependant
    cached, its record answers (a clone of the repository holds the committed records, never the checkpoints)."""
    state = {spec.run_id: finished(spec, store, methods) for spec in specs}
    by_id = {spec.run_id: spec for spec in specs}
    train = {run_id for run_id, (done, _) in state.items() if not done}
    waiting = list(train)
    while waiting:  # a run trained again for its checkpoint may itself load another's
        for required in by_id[waiting.pop()].requires.values():
            if required in state and required not in train and state[required][1] is not None:
                train.add(required)
                waiting.append(required)
    learners: Counter[str] | None = None
    for spec in specs:
        done, problem = state[spec.run_id]
        if done and spec.run_id in train and warn is not None:
            if learners is None:
                learners = stored_learners(store)
            warn(f"checkpoint {store.cache_path(spec.method, spec.run_id).name} of {spec.method} (rep {spec.rep}) "
                 f"{problem}, and a run to be trained loads it: training it again"
                 f"{another_cpu(store.read_run(spec.run_id), spec, learners.get(spec.run_id, 0))}")
    return [s for s in specs if s.run_id not in train], [s for s in specs if s.run_id in train]


def stored_learners(store: Store) -> Counter[str]:
    """Run id -> how many finished runs in the store loaded its model (list it in their ``requires``)."""
    return Counter(required for record in store.read_runs().records if record.get("status") == "ok"
                   for required in set((record.get("requires") or {}).values()))


def another_cpu(record: dict | None, spec: RunSpec, learners: int) -> str:
    """What a CPU run trained again on another CPU than its record's risks, for the warning (empty on the same
    CPU, on a GPU, or without a record): its numbers can differ, and the stored runs that learned from the earlier
    model then keep numbers made with it."""
    if record is None or spec.device != "cpu" or same_cpu(record.get("provenance"), provenance()):
        return ""
    runs = f"{learners} stored run{'s' * (learners != 1)} that learned from it keep{'s' * (learners == 1)}"
    return (f"; its record was made on {describe_cpu(record.get('provenance'))}, this machine is "
            f"{describe_cpu(provenance())}: where the new model comes out different, its record is replaced and "
            f"{runs} the earlier model's numbers (the report lists them; train a required run and the runs that "
            "load it on one machine)")
