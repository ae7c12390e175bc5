"""Chains of runs: a method may require runs of any method (itself included, several configurations of one method
under aliases), a required run must keep its checkpoint (refused when planning otherwise), and a role may ask for
an initialisation stream of its own that its scratch student shares."""

from __future__ import annotations

import pytest
import torch

from benchmark.contract import MethodBase, Recipe, Role, required_method
from benchmark.engine.discovery import discover
from benchmark.engine.plan import plan, scratch_config
from benchmark.engine.spec import config_to_dict
from benchmark.errors import BadInput
from tests.conftest import run_main
from tests.projects import METHOD_HEADER, make_project, run_context

# A one-stage method that keeps no checkpoint, and a method that loads its student.
PLAIN = METHOD_HEADER + '''

@dataclass
class Config:
    epochs: int = 1  # training epochs


class Method(MethodBase):
    Config = Config

    def roles(self, cfg, data):
        return {{"student": Role("hinton_student", "flat")}}

    def train(self, run, cfg):
        model = run.build("hinton_student", "flat")
        run.fit({{"student": model}}, lambda b: b.update({{"student": {{"loss": F.cross_entropy(
            b.forward("student"), b.y)}}}}), epochs=cfg.epochs, batch_size=64, lr=1e-3)
        return {{"student": model}}
'''
LOADER = PLAIN.replace("    def roles(", '''    def requires(self, cfg):
        return {{"plain": {{}}}}

    def roles(''')


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path, {"plain": PLAIN, "loader": LOADER})


def test_requiring_a_run_that_keeps_no_checkpoint_is_refused_when_planning(project, tmp_path):
    methods = discover(project)
    with pytest.raises(BadInput, match=r"loader requires plain .*saves_models\(\) is False"):
        plan([methods["loader"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    out = tmp_path / "out"
    res = run_main("run", "loader", "--datasets", "digits", "--seeds", "1", "--preset", "smoke", "--out", str(out),
                   "--no-progress", env={"BENCHMARK_PROJECT_ROOT": str(project)})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "saves_models" in lines[0] and "plain" in lines[0]
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())  # nothing trained


def test_a_required_run_that_keeps_its_checkpoint_is_planned_first(project):
    (project / "methods" / "plain" / "method.py").write_text(
        (project / "methods" / "plain" / "method.py").read_text().replace(
            "    Config = Config\n", "    Config = Config\n    provides_cache = True\n", 1))
    methods = discover(project)
    specs = plan([methods["loader"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    assert [s.method for s in specs] == ["plain", "loader"]
    assert specs[1].requires == {"plain": specs[0].run_id}


class Chain(MethodBase):
    """A method that requires itself under several aliases (generations 1..k-1 of a chain)."""

    name = "chain"

    class Config:
        def __init__(self, generation: int = 1):
            self.generation = generation

    def requires(self, cfg):
        return {f"chain#{g}": {"generation": g} for g in range(1, cfg.generation)}


def test_aliases_name_runs_of_one_method_and_saves_models_follows_them():
    assert required_method("born_again#2") == "born_again" and required_method("teacher") == "teacher"
    # The default configuration requires nothing of the method, so by the default rule it keeps nothing;
    # a configuration that requires itself under an alias is a later stage.
    chain = Chain()
    assert not chain.saves_models(Chain.Config(1)) and not chain.saves_models(Chain.Config(3))
    chain.Config = lambda: Chain.Config(3)  # a default that requires earlier generations: those are kept
    assert chain.saves_models(Chain.Config(1)) and not chain.saves_models(Chain.Config(3))


def test_a_roles_own_init_stream_reaches_its_scratch_student_and_changes_only_it(tmp_path):
    methods = discover()
    run, cfg = run_context(tmp_path, "scratch_student")
    default = run.build("hinton_student", "flat")
    own = run.build("hinton_student", "flat", init="gen:1")
    again = run.build("hinton_student", "flat", init="gen:1")
    other = run.build("hinton_student", "flat", init="gen:2")
    first = [next(iter(m.state_dict().values())) for m in (default, own, again, other)]
    assert torch.equal(first[1], first[2])
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2 + 1])
    # Without a stream the scratch student's stored configuration (and so its id) is what it was before the field
    # existed; with one, it names the stream.
    role = Role("hinton_student", "flat", scratch=Recipe(lr=1e-3, batch_size=64, epochs=2))
    data = run.data
    plain = config_to_dict(scratch_config(role, methods, preset="smoke", data=data))
    assert "init" not in plain
    streamed = scratch_config(Role(**{**vars(role), "init": "gen:1"}), methods, preset="smoke", data=data)
    assert streamed.init == "gen:1" and config_to_dict(streamed)["init"] == "gen:1"
