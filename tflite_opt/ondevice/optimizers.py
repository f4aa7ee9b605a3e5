"""SGD and Adam updates written with ops that TFLite has as builtins.

Keras's optimizers cannot be traced into an on-device file: their ``apply_gradients`` emits
ops such as ``ResourceApplyAdam`` that TFLite lacks. These are the same formulas as Keras 3's
``SGD`` and ``Adam`` (and tf_keras 2.21's), so a step on the device matches a step of
``model.fit`` to float tolerance (``tests/ondevice/test_runner.py`` checks it), written with
``read``/``assign`` on resource variables, arithmetic, ``sqrt`` and ``pow``.

The optimizer's state (momenta, Adam's moments, and for every optimizer the step counter, as
Keras's ``optimizer.iterations``) is held in variables named ``slot_names``; zeros are a fresh
optimizer, which is what ``restore`` with ``reset_optimizer=True`` writes.

Example:
    >>> optimizer = make_optimizer("adam", learning_rate=1e-3)
    >>> optimizer.defaults()
    {'learning_rate': 0.001, 'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-07}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tflite_opt.errors import InvalidArgumentError

OPTIMIZERS = ("sgd", "adam")
# Keras's default learning rates: SGD 0.01, Adam 0.001.
DEFAULT_LEARNING_RATES = {"sgd": 0.01, "adam": 0.001}


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer and its hyperparameters, baked into the exported ``train`` signature.

    Attributes:
        name: ``"sgd"`` or ``"adam"``.
        learning_rate: Initial step size (> 0); the file's ``set_learning_rate`` signature
            changes it at run time.
        momentum: SGD momentum in [0, 1) (Keras's ``SGD(momentum=)``); 0 keeps no state.
        beta_1, beta_2, epsilon: Adam's (Keras's defaults 0.9, 0.999, 1e-7).
    """

    name: str
    learning_rate: float
    momentum: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise InvalidArgumentError(f"optimizer={self.name!r} is not one of {OPTIMIZERS}")
        for field in ("learning_rate", "epsilon"):
            value = getattr(self, field)
            if not _is_number(value) or not 0 < value < float("inf"):
                raise InvalidArgumentError(f"{field}={value!r} for optimizer {self.name!r} must "
                                           "be a finite number > 0")
        for field in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, field)
            if not _is_number(value) or not 0 <= value < 1:
                raise InvalidArgumentError(f"{field}={value!r} for optimizer {self.name!r} must "
                                           "be a number in [0, 1)")

    def defaults(self) -> dict[str, float]:
        if self.name == "sgd":
            return {"learning_rate": self.learning_rate, "momentum": self.momentum}
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}

    def slots_per_weight(self) -> tuple[str, ...]:
        """Names of the state kept per weight: ``()``, ``("momentum",)`` or ``("m", "v")``."""
        if self.name == "adam":
            return ("m", "v")
        return ("momentum",) if self.momentum else ()

    def keras_optimizer(self, keras: Any) -> Any:
        """The same optimizer in Keras (``keras`` is either Keras module), for comparisons."""
        if self.name == "sgd":
            return keras.optimizers.SGD(learning_rate=self.learning_rate, momentum=self.momentum)
        return keras.optimizers.Adam(learning_rate=self.learning_rate, beta_1=self.beta_1,
                                     beta_2=self.beta_2, epsilon=self.epsilon)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def make_optimizer(name: str, learning_rate: float | None = None, **hyperparameters: float
                   ) -> OptimizerSpec:
    """An ``OptimizerSpec``; ``learning_rate=None`` takes Keras's default for ``name``.

    Raises:
        InvalidArgumentError: An unknown optimizer, hyperparameter or value out of range.
    """
    if name not in OPTIMIZERS:
        raise InvalidArgumentError(f"optimizer={name!r} is not one of {OPTIMIZERS}")
    allowed = {"sgd": {"momentum"}, "adam": {"beta_1", "beta_2", "epsilon"}}[name]
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise InvalidArgumentError(f"optimizer {name!r} takes {sorted(allowed)}, not {unknown}")
    rate = DEFAULT_LEARNING_RATES[name] if learning_rate is None else learning_rate
    return OptimizerSpec(name, rate, **hyperparameters)


def apply_update(tf: Any, spec: OptimizerSpec, variable: Any, gradient: Any, slots: list[Any],
                 step: Any | None, learning_rate: Any) -> None:
    """Applies one update to ``variable``, reading and writing its ``slots``.

    ``step`` is the step counter *after* this step (Adam: 1 on the first step), a float32
    tensor; the caller increments the variable once per ``train`` call. ``learning_rate`` is
    a float32 scalar tensor: the file's learning-rate variable, which an app may change
    between steps (``spec.learning_rate`` is only its initial value).
    """
    lr = learning_rate
    if spec.name == "sgd":
        if not spec.momentum:
            variable.assign_sub(lr * gradient)
            return
        (velocity,) = slots  # Keras: m = momentum * m - lr * g; w += m
        new_velocity = velocity * spec.momentum - lr * gradient
        velocity.assign(new_velocity)
        variable.assign_add(new_velocity)
        return
    m, v = slots  # Keras Adam: moments, then the bias-corrected step
    beta_1 = tf.constant(spec.beta_1, tf.float32)
    beta_2 = tf.constant(spec.beta_2, tf.float32)
    alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
    new_m = m + (gradient - m) * (1.0 - beta_1)
    new_v = v + (tf.square(gradient) - v) * (1.0 - beta_2)
    m.assign(new_m)
    v.assign(new_v)
    variable.assign_sub(new_m * alpha / (tf.sqrt(new_v) + spec.epsilon))
