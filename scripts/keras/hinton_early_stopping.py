"""Execute the early stopping of the notebook ``hinton_kd_mnist`` under Keras 2 semantics, on scikit-learn's digits.

What it checks (issue 20, item 6): the notebook's ``Distiller`` is compiled without a loss, and its ``fit`` shares one
``EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)`` with the teacher and the scratch student.
methods/hinton_kd's ``early_stop="as_published"`` assumes that Keras 2 then reports ``val_loss = 0`` every epoch and
restores the weights from the end of epoch 1. This script runs the notebook's code and records, per seed, what Keras
reports as ``val_loss`` for the distiller, how many epochs ran, which epoch ``EarlyStopping`` says it restores
(``best_epoch``), which epoch's student weights the fitted student actually holds (compared with a snapshot taken
at the end of every epoch), and the student's test accuracy; the same for the teacher and the scratch student.

The notebook's code is kept as published (Distiller with its train_step and no test_step, compile arguments,
architectures, Adam(), batch 64, 50 epochs, T = 10, alpha = 0.1, validation_split=0.1, one shared EarlyStopping
instance). Changes, none of which touches training: MNIST -> digits (64 inputs instead of 784), fit verbose=0, a
callback that snapshots the student's weights, evaluate(return_dict=True). Digits as the project reads them
(benchmark/data/datasets/digits.py, flat view): pixels 0..16 divided by 16 (the notebook divides MNIST's 0..255
by 255: both map to [0, 1]); the test split is the project's fixed stratified 20% (359 images, drawn with
numpy's SeedSequence([0, 0]) as benchmark/data/splits.py does), the training arrays in their original order, so
validation_split=0.1 holds out their last 144, like the project's ``validation=keras_last``.

It imports only TensorFlow/tf-keras, numpy and scikit-learn; it is not part of the ``benchmark`` package and
TensorFlow is no dependency of the project. Run it from a separate virtual environment:

    python3 -m venv .tfenv
    .tfenv/bin/pip install "tensorflow-cpu==2.21.*" "tf-keras==2.21.*" scikit-learn numpy
    .tfenv/bin/python scripts/keras/hinton_early_stopping.py --seeds 0 1 2 3 4 [--json out.json]
    .tfenv/bin/python scripts/keras/hinton_early_stopping.py --keras3 --seeds 0   # the notebook on Keras 3

Keras 2 semantics: TF_USE_LEGACY_KERAS=1 (set here unless --keras3) makes ``from tensorflow import keras`` the
tf-keras package (TensorFlow >= 2.16); with TensorFlow <= 2.15 tf.keras is Keras 2 anyway.
"""

import argparse
import json
import os
import sys
import traceback


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="keras.utils.set_random_seed values")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (inter-op: 1)")
    p.add_argument("--keras3", action="store_true", help="use Keras 3 (tf.keras on TF >= 2.16) instead of tf-keras")
    p.add_argument("--json", help="also write the per-seed results (with per-epoch logs) to this file")
    return p.parse_args()


ARGS = parse_args()
if not ARGS.keras3:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402
from tensorflow.keras.callbacks import EarlyStopping  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)


def stratified_pick(y, n, generator):
    """benchmark.data.splits.stratified_pick, copied: sorted indices of n examples, each class its share."""
    classes, counts = np.unique(y, return_counts=True)
    take, rem = np.divmod(counts * n, len(y))
    extra = n - int(take.sum())
    take[np.lexsort((classes, -rem))[:extra]] += 1
    picked = [generator.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def load_digits_split():
    """(x_train, y_train, x_test, y_test) as the project's digits (flat view): the fixed stratified 20% test split
    (seed 0, stream 0 of benchmark.data.splits), pixels / 16, training arrays in their original order."""
    d = load_digits()
    x = d.images.reshape(len(d.images), -1).astype(np.float32) / np.float32(16)
    y = d.target.astype(np.int64)
    test = stratified_pick(y, round(0.2 * len(y)), np.random.default_rng(np.random.SeedSequence([0, 0])))
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[test], y[test]


# ---- the notebook's code (MNIST's 784 inputs -> digits' 64) ----------------------------------------------------

def create_teacher(n_inputs):
    model = keras.Sequential([
        layers.Input(shape=(n_inputs,)),
        layers.Dense(1200, activation='relu'),
        layers.Dropout(0.5),
        layers.Dense(1200, activation='relu'),
        layers.Dropout(0.5),
        layers.Dense(10)
    ])
    return model


def create_student(n_inputs):
    model = keras.Sequential([
        layers.Input(shape=(n_inputs,)),
        layers.Dense(300, activation='relu'),
        layers.Dense(10)
    ])
    return model


class Distiller(keras.Model):
    def __init__(self, student, teacher):
        super().__init__()
        self.student = student
        self.teacher = teacher

    def compile(self, optimizer, metrics,
                student_loss_fn, distillation_loss_fn,
                alpha=0.1, temperature=10):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha = alpha
        self.temperature = temperature

    def train_step(self, data):
        x, y = data
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            student_loss = self.student_loss_fn(y, student_logits)
            distill_loss = self.distillation_loss_fn(
                tf.nn.softmax(teacher_logits / self.temperature, axis=1),
                tf.nn.softmax(student_logits / self.temperature, axis=1),
            )
            loss = self.alpha * student_loss + (1 - self.alpha) * distill_loss
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
        self.compiled_metrics.update_state(y, student_logits)
        results = {m.name: m.result() for m in self.metrics}
        results.update({
            "student_loss": student_loss,
            "distill_loss": distill_loss,
            "total_loss": loss,
        })
        return results

    def call(self, inputs, training=False, mask=None):
        return self.student(inputs, training=training)


# ---- instrumentation --------------------------------------------------------------------------------------------

class WeightTrail(keras.callbacks.Callback):
    """The student's weights at the end of every epoch, to tell which epoch's weights the fit hands back."""

    def __init__(self, student):
        super().__init__()
        self.student, self.snapshots = student, []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append([w.copy() for w in self.student.get_weights()])


def weights_epoch(model, trail):
    """1-based epochs whose end-of-epoch weights equal the model's current weights exactly."""
    now = model.get_weights()
    return [e + 1 for e, snap in enumerate(trail.snapshots)
            if all(np.array_equal(a, b) for a, b in zip(now, snap, strict=True))]


def stopping(cb, history, model, trail):
    """What one fit with the shared EarlyStopping did."""
    values = history.history.get("val_loss")
    return {"epochs_run": len(history.epoch), "best_epoch": cb.best_epoch + 1,
            "stopped_epoch": cb.stopped_epoch + 1 if cb.stopped_epoch else None,
            "best_val_loss": float(cb.best), "val_loss": None if values is None else [float(v) for v in values],
            "weights_of_epoch": weights_epoch(model, trail), "log_keys": sorted(history.history)}


def run_seed(seed, data):
    x_train, y_train, x_test, y_test = data
    n_inputs = x_train.shape[1]
    keras.utils.set_random_seed(seed)
    out = {"seed": seed}

    early_stopping = EarlyStopping(
        monitor='val_loss',
        patience=10,
        restore_best_weights=True
    )
    teacher = create_teacher(n_inputs)
    teacher.compile(
        optimizer='adam',
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=['accuracy']
    )
    trail = WeightTrail(teacher)
    h = teacher.fit(x_train, y_train, epochs=50, batch_size=64, validation_split=0.1,
                    callbacks=[early_stopping, trail], verbose=0)
    out["teacher"] = stopping(early_stopping, h, teacher, trail)
    out["teacher"]["test_acc"] = float(teacher.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])

    student = create_student(n_inputs)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=tf.keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    trail = WeightTrail(student)
    history = distiller.fit(x_train, y_train, epochs=50, batch_size=64, validation_split=0.1,
                            callbacks=[early_stopping, trail], verbose=0)
    out["distiller"] = stopping(early_stopping, history, student, trail)
    out["distiller"]["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    out["distiller"]["evaluate"] = {k: float(v) for k, v in
                                    distiller.evaluate(x_test, y_test, verbose=0, return_dict=True).items()}
    student.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"]
    )
    out["distiller"]["test_acc"] = float(student.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])

    student_scratch = create_student(n_inputs)
    student_scratch.compile(
        optimizer=tf.keras.optimizers.Adam(),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=['accuracy']
    )
    trail = WeightTrail(student_scratch)
    h = student_scratch.fit(x_train, y_train, epochs=50, batch_size=64, validation_split=0.1,
                            callbacks=[early_stopping, trail], verbose=0)
    out["scratch"] = stopping(early_stopping, h, student_scratch, trail)
    out["scratch"]["test_acc"] = float(
        student_scratch.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])
    return out


def mean_sd(values):
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else \
        f"{100 * values[0]:.2f}"


def print_table(results):
    print("| seed | teacher: epochs run / best | teacher test % | distiller val_loss (distinct values) "
          "| epochs run | EarlyStopping best_epoch | weights held = end of epoch | student test % "
          "| scratch: epochs run / best | scratch test % |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        t, d, s = r["teacher"], r["distiller"], r["scratch"]
        distinct = sorted(set(d["val_loss"])) if d["val_loss"] is not None else "missing"
        print(f"| {r['seed']} | {t['epochs_run']} / {t['best_epoch']} | {100 * t['test_acc']:.2f} | {distinct} "
              f"| {d['epochs_run']} | {d['best_epoch']} | {d['weights_of_epoch']} | {100 * d['test_acc']:.2f} "
              f"| {s['epochs_run']} / {s['best_epoch']} | {100 * s['test_acc']:.2f} |")
    for role in ("teacher", "distiller", "scratch"):
        print(f"{role}: test accuracy mean ± sd (n={len(results)}) = "
              f"{mean_sd([r[role]['test_acc'] for r in results])} %")


def main():
    import tf_keras
    versions = {"tensorflow": tf.__version__, "keras_used": keras.__name__ if hasattr(keras, "__name__") else "",
                "tf_keras": tf_keras.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
                "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS")}
    versions["keras_module_of_Model"] = keras.Model.__module__
    print(json.dumps(versions))
    data = load_digits_split()
    print(f"digits: {len(data[1])} training (of which validation_split=0.1 holds out the last "
          f"{len(data[1]) - int(len(data[1]) * 0.9)}), {len(data[3])} test")
    results = []
    for seed in ARGS.seeds:
        try:
            results.append(run_seed(seed, data))
        except Exception as exc:  # --keras3: report how the notebook fails, then stop
            frames = " > ".join(f"{f.name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__))
            print(f"seed {seed}: {type(exc).__name__}: {str(exc).splitlines()[0]}\n  raised in {frames}")
            return 1
        r = results[-1]["distiller"]
        print(f"seed {seed}: distiller log keys {r['log_keys']}; val_loss {r['val_loss']}", flush=True)
    print_table(results)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"versions": versions, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
