"""Pruning schedules for Keras 3: when masks update and to what sparsity.

The math of tfmot's ``pruning_schedule.py`` (PolynomialDecay, ConstantSparsity), written with
``keras.ops`` so that it runs inside any backend's train step; tfmot's classes only work on
tf_keras. A schedule maps the pruning step (1 on the first training batch) to
``(should_prune, sparsity)``; masks update only on steps where ``should_prune`` is true.
"""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras3
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.recipe import PruneStage

keras = keras3()
ops = keras.ops


class PruningSchedule:
    """Base class: ``schedule(step) -> (should_prune, sparsity)`` as backend tensors."""

    begin_step: int
    end_step: int
    frequency: int

    def should_prune(self, step: Any) -> Any:
        """True on steps in ``[begin_step, end_step]`` that are a multiple of ``frequency``."""
        step = ops.cast(step, "int32")  # int32: JAX disables 64-bit ints by default
        in_range = ops.greater_equal(step, self.begin_step)
        if self.end_step >= 0:
            in_range = ops.logical_and(in_range, ops.less_equal(step, self.end_step))
        on_turn = ops.equal(ops.mod(step - self.begin_step, self.frequency), 0)
        return ops.logical_and(in_range, on_turn)

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PruningSchedule":
        return cls(**config)


def _check(what: str, ok: bool, value: Any, accepted: str) -> None:
    if not ok:
        raise InvalidArgumentError(f"{what} is {value!r}; accepted: {accepted}")


@keras.saving.register_keras_serializable(package="tflite_opt")
class PolynomialDecay(PruningSchedule):
    """Sparsity ramps from ``initial_sparsity`` to ``final_sparsity`` as a polynomial.

    ``sparsity(step) = final + (initial - final) * (1 - p) ** power`` with
    ``p = clip((step - begin_step) / (end_step - begin_step), 0, 1)``, as in tfmot.

    Args:
        initial_sparsity: Sparsity at ``begin_step``, in [0, 1).
        final_sparsity: Sparsity from ``end_step`` on, in [initial_sparsity, 1).
        begin_step: First step that prunes. Defaults to 0.
        end_step: Step at which the ramp reaches ``final_sparsity``; > begin_step.
        power: Exponent of the ramp. Defaults to 3.
        frequency: Steps between mask updates. Defaults to 100.

    Example:
        >>> PolynomialDecay(0.0, 0.75, begin_step=0, end_step=1000, frequency=100)(500)
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int = 0,
                 end_step: int = 1000, power: float = 3.0, frequency: int = 100) -> None:
        _check("final_sparsity", 0.0 <= final_sparsity < 1.0, final_sparsity, "a number in [0, 1)")
        _check("initial_sparsity", 0.0 <= initial_sparsity <= final_sparsity, initial_sparsity,
               f"a number in [0, final_sparsity={final_sparsity}]")
        _check("begin_step", isinstance(begin_step, int) and begin_step >= 0, begin_step,
               "an integer >= 0")
        _check("end_step", isinstance(end_step, int) and end_step > begin_step, end_step,
               f"an integer > begin_step={begin_step}")
        _check("frequency", isinstance(frequency, int) and frequency >= 1, frequency,
               "an integer >= 1")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.power = float(power)
        self.frequency = int(frequency)

    def __call__(self, step: Any) -> tuple[Any, Any]:
        progress = (ops.cast(step, "float32") - self.begin_step) / (self.end_step - self.begin_step)
        progress = ops.clip(progress, 0.0, 1.0)
        sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * \
            ops.power(1.0 - progress, self.power)
        return self.should_prune(step), sparsity

    def get_config(self) -> dict[str, Any]:
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="tflite_opt")
class ConstantSparsity(PruningSchedule):
    """The same ``target_sparsity`` at every update from ``begin_step`` on.

    Args:
        target_sparsity: Sparsity of each update, in [0, 1).
        begin_step: First step that prunes. Defaults to 0.
        end_step: Last step that prunes; -1 for no end. Defaults to -1.
        frequency: Steps between mask updates. Defaults to 100.

    Example:
        >>> ConstantSparsity(0.5, frequency=10)
    """

    def __init__(self, target_sparsity: float, begin_step: int = 0, end_step: int = -1,
                 frequency: int = 100) -> None:
        _check("target_sparsity", 0.0 <= target_sparsity < 1.0, target_sparsity,
               "a number in [0, 1)")
        _check("begin_step", isinstance(begin_step, int) and begin_step >= 0, begin_step,
               "an integer >= 0")
        _check("end_step", isinstance(end_step, int) and (end_step == -1 or end_step > begin_step),
               end_step, f"-1 or an integer > begin_step={begin_step}")
        _check("frequency", isinstance(frequency, int) and frequency >= 1, frequency,
               "an integer >= 1")
        self.target_sparsity = float(target_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step: Any) -> tuple[Any, Any]:
        return self.should_prune(step), ops.convert_to_tensor(self.target_sparsity, "float32")

    def get_config(self) -> dict[str, Any]:
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}


def schedule_for_stage(stage: PruneStage, total_steps: int | None = None, *,
                       target_sparsity: float | None = None, begin_step: int = 0,
                       end_step: int | None = None) -> PruningSchedule:
    """The schedule of a prune stage; the same step arithmetic as the tf_keras path.

    The polynomial ramp ends at ``end_step`` (default: ``end_fraction`` of ``total_steps``),
    snapped to a multiple of the update frequency (``PruneStage.schedule_arguments``, which
    ``tflite_opt.train.prune.pruning_schedule`` uses for tfmot's objects too).

    Example:
        >>> schedule = schedule_for_stage(PruneStage(target_sparsity=0.5), total_steps=100)
    """
    kind, arguments = stage.schedule_arguments(total_steps, target_sparsity=target_sparsity,
                                               begin_step=begin_step, end_step=end_step)
    return (ConstantSparsity if kind == "constant" else PolynomialDecay)(**arguments)
