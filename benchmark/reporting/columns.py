"""The names every reporting module shares: the columns of the tidy tables, the two selections of an accuracy,
the pairing kinds, and which metrics are summarised, compared in ablations, shown in percent or better lower.

``epoch == -1`` marks the final evaluation of the model a method ends with (the official numbers); other epochs
are learning curves.
"""

from __future__ import annotations

from benchmark.contract import CONTROL_METRICS

METRIC_COLUMNS = ["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric", "value"]
FINAL = -1
SCRATCH = "scratch_student"  # the control every role with a pair_key is compared with
PRIMARY = "test_acc"  # the official metric: sentences, figures and ablations lead with it
# Final metrics summarised for every role that has them; any other final metric whose name ends in "_acc" is
# added (e.g. a method's own accuracy), except validation/training ones.
SUMMARY_METRICS = ("test_acc", "test_auc", "test_nll", "test_ece", "test_agreement", "probe_acc",
                   "probe_acc_untrained", *CONTROL_METRICS)
LOWER_IS_BETTER = ("_nll", "_ece", "_loss")  # metric-name suffixes where a smaller value is better
# "<m>_untrained" is the same measurement on the untrained network: Δ = <m> - <m>_untrained, paired by run.
UNTRAINED = "_untrained"
FINAL_SEL, VAL_SEL = "final", "val_selected"
GROUP = ["preset", "dataset", "device", "method", "kind", "variant", "role", "metric", "selection"]
# What makes two runs a pair: the same seed, data, repetition and kind of device (a run is never compared with a
# scratch student trained on another kind: the same seed draws other dropout masks on a GPU).
UNIT = ["dataset", "base_seed", "data_key", "device", "rep"]
# What ``stats.paired`` returns, kept per comparison (prefixed ``delta_`` where the name alone is ambiguous).
PAIRED_KEYS = ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "p_signflip",
               "p_wilcoxon", "p_value", "p_value_test", "verdict", "mde", "mde_note", "note")
# config_kind: default, as published, required, defect, ablation or baseline (``families``); main: a row of the main
# table; anchor: a role with no distillation signal (shown, never compared); identical_in: the variants whose runs of
# this role repeat this row's exactly (shown once, here); family and holm_m: the Holm family and its size m;
# verdict: the family-corrected one, verdict_nominal: before correction; mde: the minimum detectable |Δ| at
# mde_alpha, Holm's first-step level α/m over the family (α for a comparison in no family).
SUMMARY_COLUMNS = GROUP + ["config_kind", "label", "main", "anchor", "identical_in", "n", "mean", "std", "ci_low",
                           "ci_high", "delta_vs", "pairing", "pair_n", "delta_mean", "delta_std", "delta_ci_low",
                           "delta_ci_high", "delta_halfwidth", "p_ttest", "p_signflip", "p_wilcoxon", "p_value",
                           "p_value_test", "family", "holm_m", "p_holm", "significant", "verdict",
                           "verdict_nominal", "mde", "mde_alpha", "mde_note", "note", "wall_time_s"]
# A role's pairing with its scratch student, as its record says: INIT, the same initial weights and batch order;
# ORDER, the same batch order and data only. The tables mark ORDER rows with ORDER_ONLY.
INIT, ORDER = "init", "order"
ORDER_ONLY = "order-paired only"
# The vs-scratch comparison of the summary row, carried into each ablation row.
VS_SCRATCH = ["config_kind", "label", "anchor", "identical_in", "n", "mean", "ci_low", "ci_high", "delta_vs",
              "pairing", "pair_n", "delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "delta_halfwidth",
              "p_value", "p_value_test", "family", "holm_m", "p_holm", "verdict", "verdict_nominal", "mde",
              "mde_alpha", "mde_note", "note"]
VS_DEFAULT = "vs_default_"  # prefix of the comparison with the method's default variant
# Holm families of the Δ-vs-default comparisons: per dataset and preset, the family ``families.family_name`` names
# (one per method, kind of variant and metric)
ABLATION_FAMILY = ["preset", "dataset", VS_DEFAULT + "family"]


def is_summarised(metric: str) -> bool:
    if metric in SUMMARY_METRICS:
        return True
    return metric.endswith("_acc") and not metric.startswith(("val_", "train_"))


def is_main(metric: str) -> bool:
    """Metrics shown in ablations: accuracies, without the untrained controls."""
    return is_summarised(metric) and metric.endswith("_acc") and not metric.endswith(UNTRAINED)


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def is_percent(metric: str) -> bool:
    return metric.endswith(("_acc", "_agreement", "_gain"))
