"""The budget audit: is every role of the audited configurations trained to convergence?

For each role of each audited configuration (by dataset, method, variant), from the stored runs:

- ``acc``: its mean final test accuracy (``test_acc`` at epoch -1; a label-free role's ``probe_acc``), in %;
- ``acc_long``, ``delta_long``: the mean at ``factor`` times the budget, from the runs of the scaled configuration
  (the same configuration with every budget field multiplied by ``factor``, :mod:`benchmark.engine.budget`), and
  the mean paired difference longer − audited over the repetitions that have both, with its 95% t-interval;
- ``slope``: the least-squares slope of its validation accuracy over the last ``window`` (20%) of the epochs it
  trained (at least 2 epochs), per repetition, in pp per epoch; then the mean and a 95% t-interval across
  repetitions;
- ``projected``: what that slope adds over another ``window`` of its training (mean over repetitions of
  slope × window × epochs trained), in pp.

A role is flagged

- ``rising`` when its slope's 95% interval lies above 0 *and* ``projected`` exceeds ``RISE_PP`` (0.5 pp): the
  curve still goes up in every sense the repetitions can show, and by an amount that matters (half the ``SHORT_PP``
  a longer budget may not gain; a consistent +0.01 pp per epoch is not flagged, nor a steep slope that
  the repetitions do not agree on: the longer budget then says whether it was real). A role that its patience
  stopped in at least half its repetitions (``patience_reps``) is not rising whatever its slope: it kept the
  weights of its best validation NLL, ``patience`` epochs before the end of its curve, and a longer budget would
  stop it in the same place; what its accuracy did after those weights is what ``past peak`` weighs. Nor is a role
  whose longer budget ran in at least half its repetitions and gained ``SHORT_PP`` or less on average: the slope
  forecasts what more training adds, and the longer budget measured it (a slow creep that levels off after the
  budget gains nothing there); its row keeps the slope and says so in ``reason``. A role that is rising and short
  at once stays rising;
- ``short`` when the longer budget's paired mean is more than ``SHORT_PP`` (1 pp) above the audited one, the
  size of the differences the benchmark reports on (its minimum detectable effects at n = 5 are 0.5-5 pp), and
  its 95% interval lies above 0 (or every pair moved by the same amount), as ``past peak`` asks of its drop: the
  pairs show a gain. A point estimate alone flags noise: kl_entanglement's student B on mnist1d moved +1.27 pp at
  3x over 3 pairs whose differences have an SD of 2.6 pp (interval [-5.2, +7.7]); a converged role that noisy
  has a mean above 1 pp about one time in four. Such a row is not flagged; its reason gives the Δ and its
  interval, and a rise its slope shows stays flagged (the longer budget did not clear it). The
  longer budget judges only where it ran in at least half the role's repetitions (:func:`audited`): one or two
  pairs of five read noise as a gain as readily as a trend (SKA's label-free probe on mnist1d moved +1.65 pp from
  2 pairs, 95% interval [-41, +44]). A role with fewer pairs is "partly audited", counted with the roles not
  audited, and its reason gives the pairs' mean;
- ``past peak`` when its final weights test worse than the weights at its best validation epoch: the paired
  difference (test accuracy at the first epoch of best validation accuracy, the appendix's validation-selected
  number, minus the final test accuracy) has its 95% interval above 0 and a mean above ``SHORT_PP``. The epoch is
  chosen on the validation split and measured on the test split, so the maximum over a noisy curve does not
  inflate it. Such a role trained past the point where it generalised best: its budget is too long for it, or
  the method overfits, and its number under a fixed budget is lower than under early stopping (reported as it is,
  with the validation-selected number in the appendix). For an early-stopped role the final weights are those its
  stopping rule kept (best validation NLL), and the flag says that rule kept worse weights than validation
  accuracy would have;
- ``capped`` when, in at least half of its repetitions, the cap ended training and the best validation NLL (the
  measure early stopping watches) falls in the last ``CAP_FRACTION`` (10%) of the epochs: the cap, not the
  stopping rule, decided where training ended, so the role and its scratch partner may not have stopped by the
  same rule. A run stopped by its patience (its config's ``patience`` epochs without a better NLL before the cap)
  is never capped, nor is a run without patience: it trains every epoch of a fixed budget and keeps its final
  weights, as its scratch partner does, so no stopping rule is there for a cap to overrule (its convergence is
  what ``rising`` and ``short`` judge; its validation NLL may fall to the end by amounts that change no
  prediction).

``rising``, ``past peak`` and ``capped`` read the role's own curves, so they are judged without a longer run;
``short`` needs one.

A role with no validation curve (a label-free one, or a run without a validation split) has no slope and is
judged by the longer budget alone. Input frames are plain pandas (nothing here reads a store):

- ``metrics``: the tidy frame, columns run_id, method, variant, dataset, rep, role, epoch, metric, value (epoch -1:
  final);
- ``runs``: one row per run, columns run_id, method, kind, variant, preset, dataset, rep, config (a dict, or its
  JSON text), and optionally status (only "ok" runs are read).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.budgets import BOUND
from benchmark.reporting import stats

FACTOR = 3.0  # the longer budget the audit compares with
WINDOW = 0.2  # the last fifth of the epochs trained: the slope's window, and the projection's horizon
RISE_PP = 0.5  # projected gain (pp) above which a significantly positive slope is "still rising"
SHORT_PP = 1.0  # the longer budget's paired gain (pp) above which a role is "short"
RATIO_TOLERANCE = 0.02  # a scaled field may miss factor × value by 2% (budgets adapted to the data round up)
CAP_FRACTION = 0.1  # a best epoch in the last 10% of the cap is "capped"
CURVE, STOP_CURVE, FINAL, LABEL_FREE_FINAL = "val_acc", "val_nll", "test_acc", "probe_acc"

COLUMNS = ["dataset", "method", "variant", "role", "metric", "n", "epochs", "acc", "acc_sd", "n_long", "acc_long",
           "delta_long", "delta_low", "delta_high", "slope", "slope_low", "slope_high", "projected", "peak_drop",
           "peak_low", "peak_high", "rising", "peaked", "short", "patience_reps", "capped_reps", "capped", "flagged",
           "reason", "left"]


def _config(value) -> dict:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value) if isinstance(value, Mapping) else {}


def is_scaled(base: Mapping, other: Mapping, fields: Sequence[str], factor: float = FACTOR) -> int:
    """How many budget fields ``other`` scales by ``factor`` (within ``RATIO_TOLERANCE``) relative to ``base``,
    when it differs from ``base`` in nothing else; 0 when it is not a scaled version of ``base``."""
    if set(base) != set(other):
        return 0
    scaled = 0
    for key, value in base.items():
        if other[key] == value:
            continue
        if key not in fields or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                        for v in (value, other[key])):
            return 0
        if abs(other[key] / value - factor) > RATIO_TOLERANCE * factor:
            return 0
        scaled += 1
    return scaled


def longer_runs(runs: pd.DataFrame, base_ids: Iterable[str], budget_fields: Callable[[str], Sequence[str]],
                factor: float = FACTOR) -> dict[str, str]:
    """{audited run id: the run of the same method, preset, dataset and repetition whose configuration is its own
    at ``factor`` times the budget}; where several qualify, the one scaling the most budget fields."""
    by_unit = {key: group for key, group in runs.groupby(["method", "preset", "dataset", "rep"], dropna=False)}
    out = {}
    rows = runs.set_index("run_id")
    for run_id in base_ids:
        if run_id not in rows.index:
            continue
        run = rows.loc[run_id]
        base_cfg, fields = _config(run["config"]), tuple(budget_fields(run["method"]))
        best, best_count = None, 0
        for _, other in by_unit[(run["method"], run["preset"], run["dataset"], run["rep"])].iterrows():
            count = is_scaled(base_cfg, _config(other["config"]), fields, factor) if other["run_id"] != run_id else 0
            if count > best_count:
                best, best_count = other["run_id"], count
        if best is not None:
            out[run_id] = best
    return out


def unscaled_ids(runs: pd.DataFrame, budget_fields: Callable[[str], Sequence[str]], factor: float = FACTOR,
                 keep: Collection[str] = ()) -> list:
    """Every run that does not scale another run of the frame by ``factor`` in some of its budget fields (and every
    run in ``keep``, the runs the current defaults plan, whatever it scales): the audited ones when a store holds a
    suite and its scaled runs."""
    scaled = set()
    for (method, *_), group in runs.groupby(["method", "preset", "dataset", "rep"], dropna=False):
        fields, configs = tuple(budget_fields(method)), [(r, _config(c)) for r, c in zip(group["run_id"],
                                                                                       group["config"])]
        scaled |= {b for a, base in configs for b, other in configs if b != a and is_scaled(base, other, fields,
                                                                                          factor)}
    return [r for r in runs["run_id"] if r not in scaled or r in keep]


def curve_slopes(curve: pd.DataFrame, window: float = WINDOW) -> tuple[float, int]:
    """(least-squares slope of ``value`` on ``epoch`` over the last ``window`` of the epochs, at least 2; the
    epochs in the curve); NaN slope for fewer than 2 epochs. ``curve``: one run's per-epoch rows (epoch >= 0)."""
    curve = curve.sort_values("epoch")
    epochs = len(curve)
    if epochs < 2:
        return math.nan, epochs
    tail = curve.iloc[-max(2, math.ceil(window * epochs)):]
    x, y = tail["epoch"].to_numpy(float), tail["value"].to_numpy(float)
    x = x - x.mean()
    spread = (x * x).sum()
    if spread == 0:  # the window repeats one epoch (two runs' rows together): no slope
        return math.nan, epochs
    return float((x * (y - y.mean())).sum() / spread), epochs


def _best_epoch(nll: Sequence[float], patience: int | None) -> tuple[int, int] | None:
    """(best epoch, epochs trained) of one early-stopped run's validation NLL curve; None without ``patience`` or
    a finite value. The best epoch is the first minimum, as early stopping keeps it."""
    values = np.asarray(nll, dtype=float)
    if patience is None or not len(values) or not np.isfinite(values).any():
        return None
    return int(np.nanargmin(values)), len(values)


PATIENCE, CAP = "patience", "cap"  # what ended an early-stopped run (:func:`stop_reason`)


def stop_reason(nll: Sequence[float], patience: int | None, fraction: float = CAP_FRACTION) -> str | None:
    """What ended one early-stopped run, from its validation NLL curve (epochs 0..E-1, in order): ``PATIENCE``
    when ``patience`` epochs passed without a better NLL (its best epoch is ``patience`` or more epochs before its
    end); ``CAP`` when the cap ended it with its best epoch in the last ``fraction`` of the E epochs; None
    otherwise, and for a run without ``patience`` (a fixed budget, every epoch trained, the final weights kept)."""
    best = _best_epoch(nll, patience)
    if best is None:
        return None
    if best[1] - 1 - best[0] >= patience:
        return PATIENCE
    return CAP if best[0] + 1 > (1 - fraction) * best[1] else None


def stopped_by_patience(nll: Sequence[float], patience: int | None) -> bool:
    """Whether one run's validation NLL curve ended because its patience ran out (:func:`stop_reason`)."""
    return stop_reason(nll, patience) == PATIENCE


def ends_capped(nll: Sequence[float], patience: int | None, fraction: float = CAP_FRACTION) -> bool:
    """Whether one early-stopped run ended at its cap with its best epoch in the last ``fraction`` of its epochs
    (:func:`stop_reason`); a run stopped by its patience, or without ``patience``, is never capped."""
    return stop_reason(nll, patience, fraction) == CAP


def val_selected(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (run, role): test_acc at the first epoch of best val_acc; columns run_id, role, epoch, value."""
    curves = metrics[(metrics.epoch >= 0) & metrics.metric.isin(["val_acc", "test_acc"])]
    if curves.empty:
        return pd.DataFrame(columns=["run_id", "role", "epoch", "value"])
    wide = curves.pivot_table(index=["run_id", "role", "epoch"], columns="metric", values="value",
                              aggfunc="first")
    if not {"val_acc", "test_acc"} <= set(wide.columns):
        return pd.DataFrame(columns=["run_id", "role", "epoch", "value"])
    wide = wide.dropna(subset=["val_acc", "test_acc"]).reset_index().sort_values(["run_id", "role", "epoch"])
    best = wide.loc[wide.groupby(["run_id", "role"], sort=False)["val_acc"].idxmax()]
    return best[["run_id", "role", "epoch", "test_acc"]].rename(columns={"test_acc": "value"})


def peak_drops(metrics: pd.DataFrame, best: pd.DataFrame | None = None) -> pd.Series:
    """Per repetition of one role: test accuracy at its best validation epoch minus its final test accuracy, in
    pp (repetitions without both are left out). ``best``: :func:`val_selected` of ``metrics``, when already
    computed (on a frame that holds them)."""
    final = metrics[(metrics["metric"] == FINAL) & (metrics["epoch"] == -1)].groupby("rep")["value"].mean()
    best = val_selected(metrics) if best is None else best
    if best.empty or final.empty:
        return pd.Series(dtype=float)
    rep = metrics.drop_duplicates("run_id").set_index("run_id")["rep"]
    at_best = best.assign(rep=best["run_id"].map(rep)).groupby("rep")["value"].mean()
    both = at_best.index.intersection(final.index)
    return (at_best[both] - final[both]) * 100


def _final(metrics: pd.DataFrame) -> tuple[str, pd.Series]:
    """The role's official metric and its final value per repetition (test accuracy, else probe accuracy)."""
    for metric in (FINAL, LABEL_FREE_FINAL):
        rows = metrics[(metrics["metric"] == metric) & (metrics["epoch"] == -1)]
        if len(rows):
            return metric, rows.groupby("rep")["value"].mean()
    return "", pd.Series(dtype=float)


def _audit_role(key: tuple, base: pd.DataFrame, longer: pd.DataFrame, window: float,
                patience: Mapping[str, int | None], best: pd.DataFrame) -> dict:
    dataset, method, variant, role = key
    metric, final = _final(base)
    _, final_long = _final(longer)
    row = dict(dataset=dataset, method=method, variant=variant, role=role, metric=metric, n=len(final))
    mean, sd, _, _ = stats.mean_ci(final.to_numpy() * 100)
    row.update(acc=mean, acc_sd=sd)
    pairs = final.index.intersection(final_long.index)
    row.update(n_long=len(pairs), acc_long=float(final_long.mean() * 100) if len(final_long) else math.nan)
    delta = (final_long[pairs] - final[pairs]).to_numpy() * 100
    # As the summary tables do: no interval when every repetition moved by the same amount.
    comparison = stats.paired(delta)
    d_mean, d_low, d_high = (comparison[k] for k in ("delta_mean", "delta_ci_low", "delta_ci_high"))
    row.update(delta_long=d_mean, delta_low=d_low, delta_high=d_high)
    curves = base[(base["metric"] == CURVE) & (base["epoch"] >= 0)]
    slopes, gains, lengths = [], [], []
    for _, curve in curves.groupby("run_id"):  # one curve per run (two runs may share a repetition's number)
        slope, epochs = curve_slopes(curve, window)
        if math.isfinite(slope):
            slopes.append(slope * 100)
            gains.append(slope * 100 * window * epochs)
            lengths.append(epochs)
    s_mean, _, s_low, s_high = stats.mean_ci(slopes)
    projected = float(np.mean(gains)) if gains else math.nan
    row.update(epochs=float(np.mean(lengths)) if lengths else math.nan, slope=s_mean, slope_low=s_low,
               slope_high=s_high, projected=projected)
    drops = stats.paired(peak_drops(base, best).to_numpy())
    p_mean, p_low, p_high = (drops[k] for k in ("delta_mean", "delta_ci_low", "delta_ci_high"))
    row.update(peak_drop=p_mean, peak_low=p_low, peak_high=p_high)
    peaked = bool(math.isfinite(p_low) and p_low > 0 and p_mean > SHORT_PP)
    nll = base[(base["metric"] == STOP_CURVE) & (base["epoch"] >= 0)]
    ends, patient = [], []
    for run_id, curve in nll.groupby("run_id"):
        reason = stop_reason(curve.sort_values("epoch")["value"], patience.get(run_id))
        ends.append(reason == CAP)
        patient.append(reason == PATIENCE)
    capped = bool(ends) and 2 * sum(ends) >= len(ends)
    # A run its patience ended kept its best-NLL weights, epochs before the end of its curve: a longer budget would
    # end it in the same place, and the accuracy it left behind after them is what "past peak" weighs.
    stopped = bool(patient) and 2 * sum(patient) >= len(patient)
    climbing = bool(math.isfinite(s_low) and s_low > 0 and projected > RISE_PP)
    # The longer budget judges a role where it ran in at least half its repetitions: fewer pairs read noise as a gain
    # (or as none) as readily as a trend.
    judged = audited(len(final), len(pairs))
    gains = bool(judged and math.isfinite(d_mean) and d_mean > SHORT_PP)
    # Short: a gain of more than SHORT_PP that the pairs show (interval above 0; a shift every pair shares counts).
    shown = (d_low > 0) if math.isfinite(d_low) else bool(len(pairs) > 1 and comparison["delta_std"] == 0)
    short = gains and shown
    # The slope forecasts what more training adds; the longer budget, where it judges, measured it: a mean gain of
    # SHORT_PP or less clears a rise, an unshown larger one does not.
    measured = judged and not gains
    rising = climbing and not stopped and not measured
    reasons = []
    if rising:
        reasons.append(f"rising: +{s_mean:.3g} pp/epoch [{s_low:.3g}, {s_high:.3g}], +{projected:.2g} pp projected")
    if peaked:
        reasons.append(f"past peak: {p_mean:+.2f} pp [{p_low:+.2f}, {p_high:+.2f}] at its best validation epoch")
    if capped:
        reasons.append(f"capped: best validation NLL in the last {CAP_FRACTION:.0%} of the cap in {sum(ends)} of "
                       f"{len(ends)} repetitions")
    if short:
        reasons.append(f"short: {d_mean:+.2f} pp at {FACTOR:g}x")
    elif gains:
        reasons.append(f"{d_mean:+.2f} pp at {FACTOR:g}x [{d_low:+.2f}, {d_high:+.2f}]: a gain its {len(pairs)} pairs "
                       "do not show (not short)")
    if climbing and not stopped and measured:
        reasons.append(f"rising at its budget (+{projected:.2g} pp projected) but {d_mean:+.2f} pp at {FACTOR:g}x in "
                       f"{len(pairs)} of {len(final)} repetitions: not rising")
    if stopped and climbing:
        reasons.append(f"stopped by its patience in {sum(patient)} of {len(patient)} repetitions: not rising "
                       f"(+{s_mean:.3g} pp/epoch after its kept epoch)")
    if not slopes:
        reasons.append("no validation curve")
    elif len(slopes) < 2:
        reasons.append("one repetition: no slope interval")
    if not len(pairs):
        reasons.append("no longer-budget runs")
    elif not judged:
        reasons.append(f"{FACTOR:g}x in {len(pairs)} of {len(final)} repetitions ({d_mean:+.2f} pp): too few to judge")
    row.update(rising=rising, peaked=peaked, short=short, patience_reps=sum(patient), capped_reps=sum(ends),
               capped=capped, flagged=rising or peaked or short or capped, reason="; ".join(reasons))
    return row


def audited(n: int, n_long: int) -> bool:
    """Whether the longer budget judges a role of ``n`` repetitions that ran at it in ``n_long`` of them: in at least
    half (and one). A role with fewer is partly audited: counted with the roles not audited, its own curves speak."""
    return bool(n_long) and 2 * n_long >= n


def _field_lookup(budget_fields: Callable[[str], Sequence[str]] | Mapping[str, Sequence[str]] | None
                  ) -> Callable[[str], Sequence[str]]:
    """``budget_fields`` as a function of a method's name (a mapping, a function, or None: no field)."""
    if callable(budget_fields):
        return budget_fields
    declared = budget_fields or {}
    return lambda name: tuple(declared.get(name, ()))


def _ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The "ok" runs of ``runs`` (all, without a status column), a missing preset read as "", indexed 0..n-1."""
    if "status" in runs.columns:
        runs = runs[runs["status"] == "ok"]
    return runs.assign(preset=runs["preset"].fillna("") if "preset" in runs.columns else "").reset_index(drop=True)


def budget_audit(metrics: pd.DataFrame, runs: pd.DataFrame, base_ids: Iterable[str] | None = None, *,
                 factor: float = FACTOR, window: float = WINDOW,
                 budget_fields: Callable[[str], Sequence[str]] | Mapping[str, Sequence[str]] | None = None,
                 left: Iterable = ()) -> pd.DataFrame:
    """One row per (dataset, method, variant, role) of the audited runs (``base_ids``; default: every run that is
    not ``factor`` × another), columns ``COLUMNS`` (accuracies, Δ and slopes in pp; see the module docstring).

    ``budget_fields`` names each method's budget fields (a mapping, or a function of the method's name; what the
    methods declare, :func:`benchmark.engine.budget.budget_fields`, passed in by the caller); none by default.
    ``left``: the flagged roles not raised further (:data:`benchmark.budgets.NOT_RAISED`), whose row's ``left``
    says why (a flagged row keeps its flag).
    """
    budget_fields = _field_lookup(budget_fields)
    runs = _ok_runs(runs)
    # Text columns as categories: the role-by-role filters below take rows of millions, and a string column
    # (Arrow-backed) is copied string by string at each take; the rows' values are the same text.
    metrics = metrics.astype({c: "category" for c in ("run_id", "method", "variant", "dataset", "role", "metric")
                              if c in metrics})
    base_ids = unscaled_ids(runs, budget_fields, factor) if base_ids is None else list(base_ids)
    patience = {r: _config(c).get("patience") for r, c in zip(runs["run_id"], runs["config"])}
    longer = longer_runs(runs, base_ids, budget_fields, factor)
    base = metrics[metrics["run_id"].isin(set(base_ids))]
    best = val_selected(base)  # each run's test accuracy at its best validation epoch, read once for every role
    long_metrics = metrics[metrics["run_id"].isin(set(longer.values()))]
    # The longer runs' rows under the audited run's identity, so that each role finds its own.
    audited_of = {v: k for k, v in longer.items()}
    long_by_role = {role: frame for role, frame in long_metrics.groupby("role", sort=False, observed=True)}
    long_audited = {role: frame["run_id"].map(audited_of) for role, frame in long_by_role.items()}  # mapped once
    rows = []
    for key, group in base.groupby(["dataset", "method", "variant", "role"], sort=True, observed=True):
        ids = set(group["run_id"])
        mine = (long_by_role[key[3]][long_audited[key[3]].isin(ids)] if key[3] in long_by_role
                else long_metrics.iloc[:0])
        chosen = best[best["run_id"].isin(ids) & (best["role"] == key[3])]
        rows.append(_audit_role(key, group, mine, window, patience, chosen))
    why = {(b.dataset, b.method, b.variant, b.role): b.why for b in left}
    for row in rows:
        row["left"] = why.get((row["dataset"], row["method"], row["variant"], row["role"]), "")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame[frame["metric"] != ""].reset_index(drop=True)


def flag_words(row) -> list[str]:
    """What a flagged audit row says, in words with its numbers (nothing for an unflagged row)."""
    words = []
    if row.rising:
        words.append(f"still rising ({row.projected:+.2f} pp projected over another {WINDOW:.0%} of its budget)")
    if row.peaked:
        words.append(f"past its peak ({row.peak_drop:+.2f} pp [{row.peak_low:+.2f}, {row.peak_high:+.2f}] at its "
                     "best validation epoch)")
    if row.capped:
        words.append("capped (the cap ended its training at its best validation NLL)")
    if row.short:
        words.append(f"short ({row.delta_long:+.2f} pp at {FACTOR:g}x its budget)")
    if words and getattr(row, "left", ""):
        words[-1] += f", not raised further ({row.left})"
    return words


def _num(value: float, digits: int = 2, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def audit_markdown(frame: pd.DataFrame, *, flagged_only: bool = False) -> str:
    """The audit as a markdown section: a legend, then one table per dataset (roles flagged first)."""
    legend = (
        f"Each row: a role of the audited configurations, against the same configuration at {FACTOR:g}x its "
        f"training budget, paired by repetition. acc: mean final test accuracy (%; label-free roles: linear-"
        f"probe accuracy); n: repetitions at the budget (in brackets: those also run at the longer budget, the pairs "
        f"of Δ); {FACTOR:g}x: the mean at the longer budget; Δ: its paired mean difference [95% CI] (pp); "
        f"slope: least-squares slope of the validation accuracy over the last {WINDOW:.0%} of the epochs trained, "
        f"mean [95% CI] across repetitions (pp/epoch); proj.: what that slope adds over another {WINDOW:.0%} of "
        f"training (pp); peak: test accuracy at the best validation epoch minus the final, mean [95% CI] across "
        f"repetitions (pp). Flagged: rising (slope interval above 0 and proj. > {RISE_PP:g} pp, in a role not "
        f"stopped by its patience in most repetitions nor one whose {FACTOR:g}x runs, in at least half its "
        f"repetitions, gain {SHORT_PP:g} pp or less: the longer budget measured what the slope forecast), "
        f"past peak (peak interval above 0 and mean > {SHORT_PP:g} pp), capped (in at least "
        f"half the repetitions the cap ended training with the best validation NLL in its last "
        f"{CAP_FRACTION:.0%} of epochs) or short (Δ > {SHORT_PP:g} pp with its interval above 0, judged where the "
        f"longer budget ran in at least half the repetitions); \"not "
        f"audited\": no run at the longer budget, \"partly audited\": runs at it in fewer than half the "
        f"repetitions (too few to judge), so only the role's own curves speak (rising, past peak, capped).")
    lines = [legend, ""]
    if frame.empty:
        return "\n".join(lines + ["No audited runs."]) + "\n"
    for dataset, group in frame.groupby("dataset", sort=True):
        group = group[group["flagged"]] if flagged_only else group
        if group.empty:
            continue
        group = group.sort_values(["flagged", "method", "variant", "role"], ascending=[False, True, True, True])
        lines += [f"**{dataset}**", "",
                  "| method | variant | role | n | epochs | acc ± SD | " + f"{FACTOR:g}x | Δ [95% CI] | slope [95% CI] "
                  "| proj. | peak [95% CI] | flag |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in group.itertuples():
            flag = (", ".join(w for w, on in (("rising", r.rising), ("past peak", r.peaked), ("capped", r.capped),
                                              ("short", r.short)) if on)
                    or ("ok" if audited(r.n, r.n_long) else "partly audited" if r.n_long else "not audited"))
            flag += ", not raised further" if r.flagged and getattr(r, "left", "") else ""
            delta = f"{_num(r.delta_long, sign=True)} [{_num(r.delta_low, sign=True)}, {_num(r.delta_high, sign=True)}]"
            slope = f"{_num(r.slope, 3, True)} [{_num(r.slope_low, 3, True)}, {_num(r.slope_high, 3, True)}]"
            peak = f"{_num(r.peak_drop, sign=True)} [{_num(r.peak_low, sign=True)}, {_num(r.peak_high, sign=True)}]"
            lines.append(f"| {r.method} | {r.variant} | {r.role} | {r.n} ({r.n_long}) | {_num(r.epochs, 0)} | "
                         f"{_num(r.acc)} ± {_num(r.acc_sd)} | {_num(r.acc_long)} | {delta} | {slope} | "
                         f"{_num(r.projected, sign=True)} | {peak} | {'**' + flag + '**' if r.flagged else flag} |")
        lines.append("")
    return "\n".join(lines)


def audit_sections(metrics: pd.DataFrame, runs: pd.DataFrame, base_ids: Iterable[str],
                   budget_fields: Mapping[str, Sequence[str]], frame: pd.DataFrame | None = None, *,
                   every_role: bool = True, link: str = "") -> list[str]:
    """The "Budget audit" section for the runs ``base_ids`` (the main table's configurations): every role, flagged
    by its own curves (rising, past peak, capped) and, where its configuration also ran at ``FACTOR`` x its budget,
    by the longer budget (short); the roles without such a run are counted per dataset, with the command that adds
    them. ``every_role`` False: the table lists the flagged roles only, and ``link`` (a markdown link) points to
    the whole table. None only when no role has a curve or a final metric. ``frame``: the audit already computed
    from the same inputs."""
    if frame is None:
        frame = budget_audit(metrics, runs, base_ids, budget_fields=budget_fields)
    if frame.empty:
        return []
    has_long = pd.Series([audited(n, m) for n, m in zip(frame["n"], frame["n_long"].fillna(0))], index=frame.index)
    flagged = frame[frame["flagged"]]
    verdict = (f"{len(flagged)} of {len(frame)} roles are flagged (listed first)." if len(flagged)
               else f"No role is flagged: none of the {len(frame)} roles is still rising, past its peak or ended at "
                    "its cap"
                    + (f", and none of the {int(has_long.sum())} audited at {FACTOR:g}x gains more there."
                       if has_long.any() else "."))
    lines = ["## Budget audit", "", "Is every role converged? Each role of the default configurations, the "
             "controls and the baselines, judged by its own validation curves and, where the same configuration also "
             f"ran at {FACTOR:g}x its training budget (`python -m benchmark audit`), by that longer budget. " + verdict]
    datasets = sorted(frame.loc[has_long, "dataset"].unique())
    not_raised = flagged[flagged["left"].fillna("").astype(bool)] if "left" in flagged else flagged.iloc[:0]
    if len(not_raised):
        lines[-1] += (f" {len(not_raised)} of them {'is' if len(not_raised) == 1 else 'are'} not raised further (a "
                      f"budget goes up to {BOUND}x the notebook's; a role at that bound, or still rising near it in "
                      "its longer runs, keeps its flag): "
                      + "; ".join(f"{r.method} {r.variant} {r.role} on {r.dataset} ({r.left})"
                                  for r in not_raised.itertuples()) + ".")
    if datasets:
        lines[-1] += f" Audited at {FACTOR:g}x: {int(has_long.sum())} roles on {', '.join(datasets)}."
    missing = frame[~has_long]
    if len(missing):
        per = missing.groupby("dataset").size()
        counts = ", ".join(f"{n} on {d}" for d, n in per.items())
        lines[-1] += (f" Not audited (at {FACTOR:g}x in fewer than half their repetitions, so only their own curves "
                      f"speak): {len(missing)} roles "
                      f"({counts}); `{audit_command(runs, base_ids, list(per.index))}` adds them"
                      + cost_clause(audit_hours(runs, base_ids, budget_fields, list(per.index))) + ".")
    if every_role:
        return lines + ["", audit_markdown(frame)]
    if link:
        lines += ["", f"Every role, with its curves' numbers: {link}."]
    return lines + ["", audit_markdown(frame, flagged_only=True) if len(flagged) else ""]


def audit_hours(runs: pd.DataFrame, base_ids: Iterable[str], budget_fields: Mapping[str, Sequence[str]],
                datasets: Sequence[str], factor: float = FACTOR) -> dict[str, float]:
    """{dataset: hours}: ``factor`` × the wall time of the audited runs of ``datasets`` that have no longer run yet
    and a budget field to scale, as recorded where they were trained: what the audit command adds, at most (a role
    that its patience stops before the cap stops there at any cap). Empty where the runs record no wall time."""
    if runs.empty or not {"wall_time_s", "config", "dataset"} <= set(runs.columns):
        return {}
    runs, fields = _ok_runs(runs), _field_lookup(budget_fields)
    ids = set(base_ids) - set(longer_runs(runs, base_ids, fields, factor))
    scalable = runs["method"].map(fields).astype(bool)
    todo = runs[runs["run_id"].isin(ids) & runs["dataset"].isin(list(datasets)) & scalable]
    hours = todo.groupby("dataset")["wall_time_s"].sum() * factor / 3600
    return {d: float(h) for d, h in hours.items() if np.isfinite(h)}


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def cost_clause(hours: Mapping[str, float]) -> str:
    """": up to about 5.2 h of run time (digits 1.2 h, ...; ...)" for :func:`audit_hours`; "" without times."""
    if not hours:
        return ""
    each = "" if len(hours) == 1 else f" ({', '.join(f'{d} {_hours(h)}' for d, h in hours.items())})"
    return (f": up to about {_hours(sum(hours.values()))} of run time{each}, {FACTOR:g}x the time the audited runs "
            "took where they were trained (a role its patience stops takes less; `--seeds` trains fewer "
            "repetitions)")


def audit_command(runs: pd.DataFrame, base_ids: Iterable[str], datasets: Sequence[str]) -> str:
    """The command that trains the longer-budget runs of ``datasets`` (at the audited runs' preset)."""
    ids, columns = set(base_ids), ("preset", "dataset", "run_id")
    rows = zip(*(runs[c] for c in columns)) if all(c in runs.columns for c in columns) else ()
    presets = sorted({p for p, d, r in rows if r in ids and d in set(datasets) and isinstance(p, str) and p})
    preset = f" --preset {presets[0]}" if len(presets) == 1 and presets[0] != "quick" else ""
    return f"python -m benchmark audit --datasets {','.join(datasets)}{preset}"
