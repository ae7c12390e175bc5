"""The distilled students' presets: the baselines' recipe (:data:`benchmark.supervised.DISTILLATION_PRESETS`) with
the student's cap on epochs raised to :data:`DISTILLED_STUDENT_EPOCHS`.

Why: at the baselines' cap of 150 epochs the budget audit found hinton_kd's students on digits ending at the cap
with their best validation NLL in its last 10% (mean 135 epochs trained), and attention_transfer's on mnist1d still
rising at 136, while their scratch students stopped by their patience after 40-80 epochs. A soft-target loss keeps
lowering a student's validation NLL for longer than the labels alone do, so the cap, not the stopping rule, ended
the distilled students. Raised to 300, the student and its scratch student (whose recipe is the student's: the
same cap and the same patience on the same measure) both stop by their patience; a run that stops by its patience
before 150 epochs is the same run as before, only its cap differs. The teacher keeps the baselines' cap, so it is
still the very teacher run `python -m benchmark all` trains.

This module is not on the training path (:mod:`benchmark.engine.code`): a preset's values are part of the
resolved configuration, which every run's id hashes.
"""

from __future__ import annotations

from benchmark.supervised import DISTILLATION_PRESETS

DISTILLED_STUDENT_EPOCHS = 300  # the distilled student's (and so its scratch partner's) cap at quick and paper

DISTILLED_PRESETS = {preset: values if preset == "smoke" else {**values, "epochs": DISTILLED_STUDENT_EPOCHS}
                     for preset, values in DISTILLATION_PRESETS.items()}
