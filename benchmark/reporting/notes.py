"""Why a row looks the way it does, as footnotes: every row a reader could take for a broken one says why, from
the runs alone.

- A role whose accuracy is within :data:`NEAR_CHANCE` of chance (1 / the dataset's number of classes): it learned
  little or nothing here, and its method's README says whether that is the method's published behaviour (SKA's
  label-free deep layers are).
- A teacher no better than a student it teaches trained alone (the teacher's mean at most :data:`NO_BETTER`
  above its student's scratch mean): there is little for distillation to transfer; in self-distillation (the
  student is its teacher's architecture, ``controls``' ``self_distilled``) that is the premise, and said so.
- A role with no distillation signal: the method's anchor, shown and not compared.
- A role whose runs are identical under other configurations: shown once.
- A default configuration whose rows name a field (``named_fields``): what the notebook ran instead, and where.

:func:`row_notes` gives each row's notes; :class:`Footnotes` numbers them under one table.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from benchmark.data import registry
from benchmark.reporting import controls, families
from benchmark.reporting.ablations import main_metric
from benchmark.reporting.columns import FINAL_SEL, PRIMARY, SCRATCH, is_main
from benchmark.reporting.frames import Results

NEAR_CHANCE = 0.10  # a role whose accuracy is at most this far above chance (10 pp) is footnoted
NO_BETTER = 0.005  # a teacher at most this far above its student's scratch mean (0.5 pp) is "no better"

Key = tuple  # (preset, dataset, method, variant, role)


def num_classes(dataset: str) -> int | None:
    """The number of classes of a dataset this checkout knows (a superclass task ``name:GxK`` has G), else None."""
    if not registry.is_known(dataset):
        return None
    base, superclass = registry.parse_name(dataset)
    if superclass is not None:
        return superclass[0]
    info = registry.discover()[base]
    return len(info.module.classes) if info.ok else None


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _readme(kind: str, method: str) -> str:
    return f"`{'baselines' if kind == 'baseline' else 'methods'}/{method}/README.md`"


def chance_notes(summary: pd.DataFrame) -> dict[Key, str]:
    """On every role whose main metric (test accuracy, or a probe's) is near chance."""
    final = summary[(summary.selection == FINAL_SEL) & summary.metric.map(is_main).astype(bool)]
    out = {}
    for r in main_metric(final, ("preset", "dataset", "method", "variant", "role")).itertuples():
        k = num_classes(r.dataset)
        if k is None or r.mean > 1 / k + NEAR_CHANCE + 1e-9:
            continue
        head = (f"{_pct(r.mean)} is within {NEAR_CHANCE * 100:.0f} pp of chance ({_pct(1 / k)}, {k} classes)"
                + ("" if r.metric == PRIMARY else f" ({r.metric})"))
        if r.method == SCRATCH:
            tail = "trained alone with this recipe, the architecture learns little or nothing here"
        else:
            tail = (f"it learned little or nothing here; {_readme(r.kind, r.method)} says whether that is what the "
                    "method is published to do")
        out[(r.preset, r.dataset, r.method, r.variant, r.role)] = f"{head}: {tail}."
    return out


def teacher_notes(results: Results) -> dict[Key, str]:
    """On a student whose required teacher is no better than the student trained alone, and on that teacher."""
    s = results.summary
    acc = s[(s.selection == FINAL_SEL) & (s.metric == PRIMARY)].set_index(
        ["preset", "dataset", "method", "variant", "role"])
    acc = acc[~acc.index.duplicated()]
    partners = results.scratch_partners
    config_of = {r.run_id: (r.preset, r.dataset, r.method, r.variant) for r in results.current.itertuples()}
    needs: dict[tuple, set] = defaultdict(set)
    for r in results.current.itertuples():
        needs[config_of[r.run_id]] |= {config_of[rid] for rid in r.requires if rid in config_of}
    rows = list(acc.itertuples())
    rows_of: dict[tuple, list] = defaultdict(list)  # (preset, dataset, method, variant) -> its rows, in acc's order
    for position, row in enumerate(rows):
        rows_of[row.Index[:4]].append((position, row))
    alone_of = {row.Index[:4]: row for row in rows if row.Index[2] == SCRATCH}
    own_architecture = controls.lookup(results)  # which students are self-distilled
    out = {}
    for config, teachers in sorted(needs.items()):
        teacher_rows = [row for _, row in sorted(r for t in teachers for r in rows_of.get(t, []))]
        for _, student in rows_of.get(config, []):
            alone = alone_of.get((*config[:2], SCRATCH, partners.get(student.Index)))
            if alone is None:
                continue
            own = bool(own_architecture.get(student.Index, {}).get("self_distilled"))
            for teacher in teacher_rows:
                if teacher.mean > alone.mean + NO_BETTER:
                    continue
                if own:
                    out.setdefault(student.Index, f"self-distillation: the teacher ({_pct(teacher.mean)}) is the "
                                   f"student's own architecture trained alone ({_pct(alone.mean)} here), so no "
                                   "teacher advantage is expected; the row asks what its soft targets add.")
                    continue
                text = (f"the teacher ({_pct(teacher.mean)}) is no better than its student trained alone "
                        f"({_pct(alone.mean)}): there is little for distillation to transfer.")
                out.setdefault(student.Index, text)
                out.setdefault(teacher.Index, text)
    return out


def row_notes(results: Results) -> dict[Key, list[str]]:
    """(preset, dataset, method, variant, role) -> the footnotes of that row, in order."""
    s = results.summary
    notes: dict[Key, list[str]] = defaultdict(list)
    for key, text in {**chance_notes(s)}.items():
        notes[key].append(text)
    for key, text in teacher_notes(results).items():
        notes[key].append(text)
    rows = s[s.selection == FINAL_SEL].drop_duplicates(["preset", "dataset", "method", "variant", "role"])
    declared = results.declared
    for r in rows.itertuples():
        key = (r.preset, r.dataset, r.method, r.variant, r.role)
        if r.anchor:
            notes[key].append("it trains on its own loss alone, with no distillation signal: the method's anchor, "
                              "shown and not compared with its scratch student.")
        if isinstance(r.identical_in, str) and r.identical_in:
            notes[key].append(f"its runs are identical under {r.identical_in.replace('; ', ', ')} (those "
                              "configurations do not change this role): shown once.")
        if r.config_kind == families.DEFAULT and declared.named_fields.get(r.method):
            notes[key].append(_named_note(results, r))
    return dict(notes)


def _named_note(results: Results, r) -> str:
    """What a default configuration's named fields are in its notebook, and where the notebook's run is."""
    declared = results.declared
    config = results.current[(results.current.method == r.method) & (results.current.variant == r.variant)
                             & (results.current.dataset == r.dataset)].config.iloc[0]
    parts = []
    for name in declared.named_fields[r.method]:
        defect = declared.defects(r.method).get(name)
        notebook = declared.as_published.get(r.method, {}).get(name, tuple(defect)[0] if defect else None)
        said = f"{name}={config.get(name)}"
        if notebook is not None:
            said += f", where the notebook ran {name}={notebook}"
        if defect:
            said += f" ({tuple(defect)[1]})"
        parts.append(said)
    published = any(kind == families.AS_PUBLISHED and k[:3] == (r.preset, r.dataset, r.method)
                    for k, kind in results.kinds.items())
    where = (f"; the row \"{r.method} · as published\" runs the notebook's configuration" if published else
             "; `--as-published` runs the notebook's configuration")
    return f"named because it changes the number: {'; '.join(parts)}{where}."


class Footnotes:
    """Numbers the notes of the rows of one table, in the order they are first marked; the same text once."""

    def __init__(self, notes: dict[Key, list[str]] | None):
        self.notes = notes or {}
        self.texts: list[str] = []

    def mark(self, key: Key) -> str:
        """" [1][3]" after a cell of the row ``key``; "" for a row without notes."""
        numbers = []
        for text in self.notes.get(key, []):
            if text not in self.texts:
                self.texts.append(text)
            numbers.append(self.texts.index(text) + 1)
        return " " + "".join(f"[{n}]" for n in numbers) if numbers else ""

    def lines(self) -> list[str]:
        """The numbered notes, one paragraph each, with a blank line after; nothing when no row had one."""
        return [line for i, text in enumerate(self.texts, 1) for line in (f"[{i}] {text[0].upper()}{text[1:]}",
                                                                           "")]
