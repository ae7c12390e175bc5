"""The networks two or more methods share: the Hinton notebook's teacher and student (hinton_kd_mnist).

The student is the default control of the ``scratch_student`` baseline and the student of ``hinton_kd`` (and of the
method template); the teacher is the ``teacher`` baseline's default, shared by the distillation methods. Both name
their hidden layers' activations ``hidden1``, ``hidden2`` (:func:`benchmark.nn.mlp_network`).
"""

from __future__ import annotations

from benchmark.nn import architecture, flat_size, mlp_network


@architecture("hinton_teacher")
def hinton_teacher(input_shape, num_classes, hidden: int = 1200, dropout: float = 0.5):
    """D-1200-1200-C with ReLU and dropout 0.5 after each hidden layer; features hidden1, hidden2 (before dropout)."""
    return mlp_network([flat_size(input_shape), hidden, hidden, num_classes], dropout=dropout)


@architecture("hinton_student")
def hinton_student(input_shape, num_classes, hidden: int = 300):
    """D-300-C with ReLU; feature hidden1."""
    return mlp_network([flat_size(input_shape), hidden, num_classes])
