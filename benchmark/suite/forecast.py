"""What a suite will do before it does it: how many runs it trains and how many are cached, per dataset and per
method, and how long the training should take on this machine.

The expected time of a run is the store's median for runs of the same kind (method, configuration, dataset, data
budget), else its steps times a step time measured here before the plan (a few steps of the method's real step, its
loss included: :mod:`benchmark.runner.probe`), else a FLOP estimate
(:func:`benchmark.runner.schedule.expected_seconds`); the wall time is the queue's own longest-first order played
out on ``jobs`` workers, each run after the runs it needs. After the suite, :meth:`Forecast.versus` says how far
the estimate was from the time taken.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field

from benchmark.engine.spec import RunSpec
from benchmark.runner import schedule
from benchmark.runner.probe import Prober


@dataclass
class Forecast:
    cached: list[RunSpec]
    todo: list[RunSpec]
    seconds: dict[str, float] = field(default_factory=dict)  # run id -> expected seconds (to-train runs)
    from_history: int = 0  # how many of them are timed from earlier runs of their kind
    measured: int = 0  # how many of the others from a few steps measured before the plan
    at_cap: int = 0  # how many of the others stop early and are estimated at their epoch cap (an upper bound)
    wall_s: float = 0.0
    jobs: int = 1
    device: str = "cpu"

    def lines(self) -> list[str]:
        total = len(self.cached) + len(self.todo)
        out = [f"{total} runs planned: {len(self.todo)} to train, {len(self.cached)} cached"]
        if total:
            out += _table("dataset", Counter(s.dataset for s in self.todo), Counter(s.dataset for s in self.cached))
            out += _table("method", Counter(s.method for s in self.todo), Counter(s.method for s in self.cached))
        if self.todo:
            estimated = len(self.todo) - self.from_history
            how = f"{self.from_history} timed from earlier runs of the same kind in the store" if self.from_history \
                else "none timed here before"
            flops = estimated - self.measured
            how += f", {self.measured} from a few steps measured now" if self.measured else ""
            how += f", {flops} from a FLOP estimate" if flops else ""
            if flops and self.device == "cuda":
                how += " (a CPU's: an upper bound for a GPU)"
            if self.at_cap:
                one = self.at_cap == 1
                how += (f"; {self.at_cap} stop{'s' * one} early and {'is' if one else 'are'} counted at "
                        f"{'its' if one else 'their'} epoch cap, an upper bound ({'its' if one else 'their'} method "
                        "has no run in the store that ended early)")
            out.append(f"expected training time: about {_duration(self.wall_s)} on {self.jobs} worker(s) "
                       f"({_duration(sum(self.seconds.values()))} of run time; {how})")
        return out


    def versus(self, took_s: float) -> str:
        """One line: how far the expected training time was from the time the training took."""
        ratio = f"{took_s / self.wall_s:.2f}x" if self.wall_s > 0 else "no estimate"
        return f"training time: estimated {_duration(self.wall_s)}, took {_duration(took_s)} ({ratio} the estimate)"


def _table(what: str, todo: Counter, cached: Counter) -> list[str]:
    names = sorted(set(todo) | set(cached))
    width = max(len(what), *(len(n) for n in names))
    rows = [f"  {what:<{width}}  to train  cached"]
    rows += [f"  {name:<{width}}  {todo[name]:>8}  {cached[name]:>6}" for name in names]
    return rows


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def forecast(cached: list[RunSpec], todo: list[RunSpec], store_records, methods, *, jobs: int, batch_reps: int,
             data_root=None, device: str = "cpu", probe: bool | None = None) -> Forecast:
    """The counts of ``cached`` and ``todo`` and the expected time of training ``todo`` on ``jobs`` workers.
    ``probe``: measure the steps of kinds never timed here (None: unless every run is at the smoke preset)."""
    result = Forecast(cached, todo, jobs=jobs, device=device)
    if not todo:
        return result
    store_records = list(store_records)  # read twice: wall times and early stopping
    seen = schedule.history(store_records)
    # Smoke runs take seconds: measuring their steps would cost about as much as training them.
    prober = None if probe is False or all(s.preset == "smoke" for s in todo) and probe is None else \
        Prober(methods, {s.run_id: s for s in [*cached, *todo]}, data_root)
    result.seconds = schedule.expected_seconds(todo, seen, methods, data_root, prober=prober,
                                               fractions=schedule.stopping_fractions(store_records))
    result.from_history = sum(schedule.kind(s) in seen for s in todo)
    result.measured = sum(schedule.kind(s) in result.seconds.measured for s in todo)
    result.at_cap = sum(schedule.kind(s) in result.seconds.at_cap for s in todo)
    batching = schedule.Batching(batch_reps, methods, data_root)
    result.wall_s = play_out(schedule.tasks(todo, result.seconds, batching), jobs)
    return result


def play_out(tasks: list[schedule.Task], jobs: int) -> float:
    """The makespan of ``tasks`` handed out as the queue hands them out (highest priority among the ready ones)
    to ``jobs`` workers."""
    queue = schedule.Queue(tasks)
    running: list[tuple[float, int, schedule.Task]] = []  # (end time, tie-break, task)
    now, counter = 0.0, 0
    while queue or running:
        while len(running) < max(jobs, 1) and (task := queue.pop_ready()) is not None:
            counter += 1
            heapq.heappush(running, (now + task.expected_s, counter, task))
        if not running:
            break  # what is left waits on runs outside the plan that never finish here
        now, _, task = heapq.heappop(running)
        for run_id in task.ids:
            queue.finish(run_id, True)
    return now
