"""Learning-rate schedules for ``OnDeviceTrainer.fit``: a rate per step, set in the file.

A schedule is any ``f(step) -> rate`` (``step`` counts ``fit``'s steps from 0); ``fit`` sets
``f(step)`` through the file's ``set_learning_rate`` signature before each step, as an app
would. A Keras ``LearningRateSchedule`` works too; this one is written here because the runner
needs neither TensorFlow nor Keras (a phone app computes the same few lines).

Example:
    >>> schedule = warmup_cosine(1e-3, total_steps=450, warmup_steps=45)
    >>> [round(schedule(s), 6) for s in (0, 44, 45, 449)]
    [2.2e-05, 0.001, 0.001, 0.0]
    >>> trainer.fit(x, y, epochs=10, batch_size=32, learning_rate=schedule)
"""

from __future__ import annotations

import math
from typing import Callable

from tflite_opt.errors import InvalidArgumentError


def warmup_cosine(base_rate: float, total_steps: int, warmup_steps: int = 0
                  ) -> Callable[[int], float]:
    """Linear warm-up to ``base_rate`` over ``warmup_steps``, then cosine decay towards 0.

    Step ``s < warmup_steps`` trains at ``base_rate * (s + 1) / warmup_steps``; the others at
    ``base_rate * (1 + cos(pi * (s - warmup_steps) / (total_steps - warmup_steps))) / 2``
    (Loshchilov & Hutter's SGDR without restarts, as Keras's ``CosineDecay`` with
    ``warmup_steps``), which stays > 0 through the last step ``total_steps - 1``.

    Raises:
        InvalidArgumentError: ``base_rate`` not a finite number > 0, ``total_steps < 1`` or
            ``warmup_steps`` outside ``0..total_steps - 1``.
    """
    if isinstance(base_rate, bool) or not isinstance(base_rate, (int, float)) \
            or not 0 < base_rate < math.inf:
        raise InvalidArgumentError(f"base_rate={base_rate!r} must be a finite number > 0")
    for name, value, low, high in (("total_steps", total_steps, 1, None),
                                   ("warmup_steps", warmup_steps, 0, total_steps - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low \
                or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise InvalidArgumentError(f"{name}={value!r} must be an integer {bound}")
    decay_steps = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return base_rate * (step + 1) / warmup_steps
        progress = min(step - warmup_steps, decay_steps - 1) / decay_steps
        return base_rate * 0.5 * (1.0 + math.cos(math.pi * progress))

    return schedule
