"""Which planned runs are already in the store: decided once per command (:func:`partition`), before the runner
starts, so that the command's count of cached runs and what the runner trains are the same answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmark.engine.discovery import MethodInfo
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.errors import one_line
from benchmark.store import Store, load_state


def checkpoint_loads(path: Path) -> str | None:
    """None if the checkpoint at ``path`` loads as a checkpoint, else why not (one line)."""
    try:
        state = load_state(path)
        roles = state["roles"]
        if not isinstance(roles, dict) or not all("state_dict" in r and "arch" in r for r in roles.values()):
            return "not a checkpoint of trained models"
        return None
    except Exception as exc:  # truncated, garbage, or refused by weights_only: all mean "retrain it"
        return one_line(exc)


def identity_problem(record: dict, spec: RunSpec) -> str | None:
    """None if what ``record`` says it is (method, configuration, dataset, repetition, code, required runs)
    hashes to ``spec``'s id, else why not: a record edited or copied under another run's name is not that run."""
    try:
        if RunSpec.from_dict(record).run_id == spec.run_id:
            return None
    except (TypeError, ValueError):  # a field the id needs is missing, or not JSON
        pass
    return f"what it records is not run {spec.run_id} (its identity fields hash to another id)"


def is_done(spec: RunSpec, store: Store, methods: dict[str, MethodInfo],
            warn: Callable[[str], None] | None = None) -> bool:
    """Finished (ok or skipped) as a valid record of this very run (else it is set aside), and its checkpoint
    loadable when other runs load it. A checkpoint that does not load is a missing checkpoint: the run is redone
    (``warn`` gets one line saying so)."""
    record = store.read_run(spec.run_id)
    if record is None:
        return False
    problem = identity_problem(record, spec)
    if problem:
        store.set_aside(store.run_path(spec.run_id), problem)
        return False
    if record["status"] not in ("ok", "skipped"):
        return False
    info = methods.get(spec.method)
    if record["status"] == "ok" and info is not None and info.ok:
        if info.cls().saves_models(config_from_dict(info, spec.config)):
            path = store.cache_path(spec.method, spec.run_id)
            if not path.is_file():
                return False
            problem = checkpoint_loads(path)
            if problem:
                if warn is not None:
                    warn(f"checkpoint {path.name} of {spec.method} (rep {spec.rep}) does not load ({problem}): "
                         "training it again")
                return False
    return True


def partition(specs: list[RunSpec], store: Store, methods: dict[str, MethodInfo],
              warn: Callable[[str], None] | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
    """(cached, todo): the specs already done (:func:`is_done`) and those to train, each in the given order."""
    cached, todo = [], []
    for spec in specs:
        (cached if is_done(spec, store, methods, warn) else todo).append(spec)
    return cached, todo
