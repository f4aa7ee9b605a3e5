"""Training a model on the device's way: only through the signatures of its ``.tflite`` file.

``OnDeviceTrainer`` drives a file from ``export_trainable`` with the LiteRT interpreter (the
same one an Android app links), with no TensorFlow: ``train_step``/``fit`` call the ``train``
signature (and ``set_learning_rate`` for a rate or schedule), ``infer``/``evaluate`` the
``infer`` one, ``get_weights``/``set_weights`` go through
``save``/``restore``, and ``save``/``restore`` keep a checkpoint in an ``.npz`` file (written
atomically, read with ``allow_pickle=False`` after its headers are checked).

Optimizer state: ``save``/``restore`` (the files) keep the weights, the optimizer's state
(SGD momentum, Adam's moments, the step counter) *and* the learning rate, so training resumes
exactly: ``fit``'s schedule continues from the restored ``global_step`` (Keras's
``optimizer.iterations``), not from 0. ``set_weights(weights)`` starts a fresh optimizer by
default (zero moments, step 0; the rate is kept), which is what a federated client needs each
round; ``set_weights(weights, reset_optimizer=False)`` keeps the current state, and
``reset_optimizer()`` resets it alone.

Example:
    >>> trainer = OnDeviceTrainer("outputs/digits_train.tflite")
    >>> losses = trainer.fit(x_train, y_train, epochs=5, batch_size=32, seed=0)
    >>> warm_up = lambda step: 1e-3 * min(1.0, (step + 1) / 100)  # a schedule: rate per step
    >>> losses = trainer.fit(x_train, y_train, epochs=5, learning_rate=warm_up,
    ...                      initial_step=0)  # from step 0: the fit above took global steps
    >>> trainer.evaluate(x_test, y_test)
    {'loss': 0.21, 'accuracy': 0.94}
    >>> trainer.save("outputs/checkpoint.npz")
    >>> resumed = OnDeviceTrainer("outputs/digits_train.tflite")  # after an app restart
    >>> resumed.restore("outputs/checkpoint.npz")  # weights, optimizer state, step, rate
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from tflite_opt.data.arrays import load_npz, npz_headers
from tflite_opt.errors import DataError, InvalidArgumentError, InvalidTFLiteError
from tflite_opt.files import atomic_write_bytes
from tflite_opt.runtime.interpreter import InterpreterOptions, make_interpreter
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite

REQUIRED_SIGNATURES = ("train", "infer", "save", "restore")
LEARNING_RATE_SIGNATURE = "set_learning_rate"  # files exported before it lack it
LEARNING_RATE = "learning_rate"
WEIGHT_PREFIX = "w"  # as ondevice/graph.py names the save/restore tensors
SLOT_PREFIX = "s"
STEP_SLOT = re.compile(rf"{SLOT_PREFIX}\d{{3}}_step")  # graph.py's step counter, the last slot
MAX_STEP = 2 ** 24  # the float32 counter holds whole steps exactly up to here
INFER_BATCH = 256  # rows per infer call in evaluate/infer: bounds the interpreter's memory


class OnDeviceTrainer:
    """Trains, evaluates and checkpoints an on-device training ``.tflite`` file.

    Args:
        model: A ``.tflite`` path or its bytes, from ``export_trainable``.
        options: Interpreter threads, op resolver and backend. Defaults to
            ``InterpreterOptions()`` (1 thread, XNNPACK on).

    Attributes:
        weight_specs: ``[(name, shape, dtype), ...]`` of the trainable weights, in order.
        slot_specs: The same for the optimizer's state, the step counter last.
        input_shape: One sample's shape.
        num_classes: Classes of the output.
        batch_size: The ``train`` signature's fixed batch size, or None (any).
        sparse_labels: True for integer labels, False for one-hot.
        output_kind: ``"probabilities"`` (the model ends in softmax) or ``"logits"``.

    Raises:
        InvalidTFLiteError: The file is not a readable model or lacks the four signatures.

    Example:
        >>> trainer = OnDeviceTrainer(export.path)
        >>> trainer.train_step(x[:32], y[:32])
        2.31
    """

    def __init__(self, model: ModelSource, options: InterpreterOptions | None = None):
        self.name = _describe(model)
        self.loaded = make_interpreter(read_tflite(model), options, name=self.name)
        interpreter = self.loaded.interpreter
        signatures = interpreter.get_signature_list()
        missing = [s for s in REQUIRED_SIGNATURES if s not in signatures]
        if missing:
            raise InvalidTFLiteError(f"model {self.name} lacks the on-device training signatures "
                                     f"{missing} (it has {sorted(signatures)}); export it with "
                                     "tflite_opt.ondevice.export_trainable")
        self._runners = {s: interpreter.get_signature_runner(s) for s in REQUIRED_SIGNATURES}
        if LEARNING_RATE_SIGNATURE in signatures:
            self._runners[LEARNING_RATE_SIGNATURE] = interpreter.get_signature_runner(
                LEARNING_RATE_SIGNATURE)
        saved = self._runners["save"].get_output_details()
        specs = [(name, tuple(int(d) for d in saved[name]["shape"]), np.dtype(saved[name]["dtype"]))
                 for name in sorted(saved)]
        self.weight_specs = [s for s in specs if s[0].startswith(WEIGHT_PREFIX)]
        self.slot_specs = [s for s in specs if s[0].startswith(SLOT_PREFIX)]
        # Files exported before the rate and the step joined save/restore lack them (an SGD
        # one has no step): the rate then goes through set_learning_rate, steps are counted
        # here since this trainer was made or last reset or restored.
        self._step_name = next((n for n, _, _ in self.slot_specs if STEP_SLOT.fullmatch(n)),
                               None)
        self._rate_in_state = LEARNING_RATE in saved
        self._steps_counted = 0
        train_inputs = self._runners["train"].get_input_details()
        x_spec, y_spec = train_inputs["x"], train_inputs["y"]
        self.input_shape = tuple(int(d) for d in x_spec["shape"][1:])
        batch = int(x_spec["shape_signature"][0])
        self.batch_size = None if batch < 0 else batch
        self.sparse_labels = np.dtype(y_spec["dtype"]).kind == "i"
        outputs = self._runners["infer"].get_output_details()
        # graph.py names the output after what it holds.
        self.output_kind = "probabilities" if "probabilities" in outputs else "logits"
        self.num_classes = int(outputs[self.output_kind]["shape"][-1])

    # -- data checks ------------------------------------------------------------------------

    def _check_x(self, x: Any, argument: str = "x") -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu" or x.ndim != len(self.input_shape) + 1 \
                or tuple(x.shape[1:]) != self.input_shape or len(x) == 0:
            raise DataError(f"{argument} has shape {x.shape} and dtype {x.dtype}; model "
                            f"{self.name} takes a non-empty numeric array of shape "
                            f"(N, {', '.join(map(str, self.input_shape))})")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise DataError(f"{argument} holds {int((~np.isfinite(x)).sum())} NaN or infinite "
                            "values; pass finite inputs")
        return x

    def _check_y(self, y: Any, count: int, argument: str = "y") -> np.ndarray:
        y = np.asarray(y)
        if self.sparse_labels:
            if y.shape != (count,) or y.dtype.kind not in "iu":
                raise DataError(f"{argument} has shape {y.shape} and dtype {y.dtype}; model "
                                f"{self.name} takes ({count},) integer class labels")
            if count and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{argument} holds labels from {y.min()} to {y.max()}; model "
                                f"{self.name} has classes 0 to {self.num_classes - 1}")
            return y.astype(np.int32)
        if y.shape != (count, self.num_classes) or y.dtype.kind != "f" \
                or not np.isfinite(y).all():
            raise DataError(f"{argument} has shape {y.shape} and dtype {y.dtype}; model "
                            f"{self.name} takes finite one-hot labels of shape "
                            f"({count}, {self.num_classes})")
        return y.astype(np.float32)

    # -- learning rate ----------------------------------------------------------------------

    def _rate_runner(self) -> Any:
        runner = self._runners.get(LEARNING_RATE_SIGNATURE)
        if runner is None:
            raise InvalidTFLiteError(f"model {self.name} has no {LEARNING_RATE_SIGNATURE} "
                                     "signature (it was exported before learning rates could "
                                     "change at run time); export it again with "
                                     "tflite_opt.ondevice.export_trainable")
        return runner

    @property
    def learning_rate(self) -> float:
        """The rate the next ``train`` step uses (the exported one until set or restored).

        Raises:
            InvalidTFLiteError: The file has no ``set_learning_rate`` signature.
        """
        # The signature ignores a rate <= 0 and returns the one in effect: 0 reads it.
        return float(self._rate_runner()(**{LEARNING_RATE: np.float32(0.0)})[LEARNING_RATE])

    def set_learning_rate(self, learning_rate: float) -> None:
        """Sets the rate of every later ``train`` step, through the ``set_learning_rate`` signature.

        Raises:
            InvalidArgumentError: The rate is not a finite number > 0 in float32.
            InvalidTFLiteError: The file has no ``set_learning_rate`` signature.
        """
        runner = self._rate_runner()
        try:
            rate = np.float32(learning_rate)
        except (TypeError, ValueError):
            rate = np.float32(np.nan)
        if isinstance(learning_rate, bool) or not (np.isfinite(rate) and rate > 0):
            raise InvalidArgumentError(f"learning_rate={learning_rate!r} must be a finite number "
                                       "> 0 (in float32)")
        runner(**{LEARNING_RATE: rate})

    # -- training ---------------------------------------------------------------------------

    def train_step(self, x: Any, y: Any, *, learning_rate: float | None = None) -> float:
        """One optimizer step on a batch through the ``train`` signature; returns its loss.

        The loss is the batch's mean loss *before* the step (as Keras reports it).

        Args:
            x, y: The batch.
            learning_rate: Set this rate first (it stays for later steps); None keeps the
                current one. Defaults to None.

        Raises:
            DataError: Wrong shapes or dtypes, non-finite inputs, labels out of range, or a
                batch other than the file's fixed ``batch_size``.
            InvalidArgumentError: A learning rate that is not a finite number > 0.
        """
        x = self._check_x(x)
        y = self._check_y(y, len(x))
        if self.batch_size is not None and len(x) != self.batch_size:
            raise DataError(f"the batch has {len(x)} samples; model {self.name} was exported "
                            f"with batch_size={self.batch_size}: pass batches of that size")
        if learning_rate is not None:
            self.set_learning_rate(learning_rate)
        return self._train(x, y)

    def _train(self, x: np.ndarray, y: np.ndarray) -> float:
        """One ``train`` call on a checked batch."""
        loss = float(self._runners["train"](x=x, y=y)["loss"])
        self._steps_counted += 1
        return loss

    @property
    def global_step(self) -> int:
        """Steps trained since the optimizer state was last zeroed (Keras's ``iterations``).

        0 for the file's initial weights; every ``train_step`` and ``fit`` step adds one;
        ``set_weights`` (fresh optimizer by default) and ``reset_optimizer`` set it back to 0,
        as a newly compiled Keras optimizer starts at ``iterations == 0``; ``save`` and
        ``restore`` keep it. It is the file's step counter (``save``'s last ``s...`` output,
        float32: exact to 2**24 steps); a file exported before SGD files had one counts here
        since this trainer was made, reset or restored.
        """
        if self._step_name is None:
            return self._steps_counted
        return int(self._state()[self._step_name])

    def fit(self, x: Any, y: Any, *, epochs: int = 1, batch_size: int = 32,
            seed: int | None = None, progress: bool = False,
            learning_rate: float | Callable[[int], float] | None = None,
            initial_step: int | None = None) -> list[float]:
        """Trains for ``epochs`` passes over ``(x, y)`` in shuffled batches; returns epoch losses.

        Each epoch's loss is the sample-weighted mean of its batch losses. With a fixed
        ``batch_size`` file, ``batch_size`` must equal it and a last, smaller batch is
        skipped (as a phone app feeding a fixed-shape signature would).

        Args:
            x, y: Training samples and labels.
            epochs: Passes over the data (>= 1). Defaults to 1.
            batch_size: Samples per step (>= 1). Defaults to 32.
            seed: Seed of the shuffling: epoch ``e`` of a call visits the samples in the
                order of the ``e``-th ``numpy.random.default_rng(seed).permutation(len(x))``.
                None shuffles differently each call.
            progress: Show a progress bar (tqdm) over the steps. Defaults to False.
            learning_rate: None keeps the file's current rate; a number sets it for every
                step; a schedule ``f(step) -> rate`` sets ``f(step)`` before each step, ``step``
                being ``global_step`` (steps since the optimizer state was zeroed, restored
                ones included), as Keras calls a schedule with ``optimizer.iterations``: a
                schedule continues across ``fit`` calls and after ``restore`` (a Keras
                ``LearningRateSchedule`` works as ``f``). The last rate set stays in the file.
                Defaults to None.
            initial_step: The schedule's step for this call's first step, counting up from
                it; 0 restarts the schedule. None continues from ``global_step``.
                ``global_step`` advances by this call's steps either way. Defaults to None.

        Raises:
            InvalidArgumentError: Bad ``epochs``, ``batch_size`` or ``initial_step``, or a
                schedule that returns a rate that is not a finite number > 0 (the step before
                it is the last run).

        Example:
            >>> trainer.fit(x, y, epochs=3, seed=0)
            [1.92, 0.88, 0.61]
            >>> schedule = warmup_cosine(1e-3, total_steps=5 * 45, warmup_steps=45)  # 45/epoch
            >>> trainer = OnDeviceTrainer("train.tflite")  # global_step 0
            >>> trainer.fit(x, y, epochs=3, learning_rate=schedule)  # schedule steps 0..134
            >>> trainer.save("checkpoint.npz")
            >>> resumed = OnDeviceTrainer("train.tflite")  # the app restarts
            >>> resumed.restore("checkpoint.npz")  # global_step 135, the rate of step 134
            >>> resumed.fit(x, y, epochs=2, learning_rate=schedule)  # 135..224: the rest
        """
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name}={value!r} must be an integer >= 1")
        if initial_step is not None and (isinstance(initial_step, bool)
                                         or not isinstance(initial_step, int) or initial_step < 0):
            raise InvalidArgumentError(f"initial_step={initial_step!r} must be None (continue "
                                       "from global_step) or an integer >= 0")
        if self.batch_size is not None and batch_size != self.batch_size:
            raise InvalidArgumentError(f"batch_size={batch_size} but model {self.name} was "
                                       f"exported with batch_size={self.batch_size}; pass "
                                       f"batch_size={self.batch_size}")
        schedule = learning_rate if callable(learning_rate) else None
        if learning_rate is not None and schedule is None:
            self.set_learning_rate(learning_rate)  # checked before any step
        elif schedule is not None:
            self._rate_runner()
            first = self.global_step if initial_step is None else initial_step
        x = self._check_x(x)
        y = self._check_y(y, len(x))
        rng = np.random.default_rng(seed)
        full = self._epoch_samples(len(x), batch_size)
        if full == 0:
            raise DataError(f"{len(x)} samples make no batch of the file's fixed "
                            f"batch_size={self.batch_size}")
        steps = self.steps_per_epoch(len(x), batch_size)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs * steps, desc="on-device training", unit="step")
        losses = []
        step = 0
        try:
            for _ in range(epochs):
                order = rng.permutation(len(x))[:full]
                total = 0.0
                for start in range(0, full, batch_size):
                    batch = order[start:start + batch_size]
                    if schedule is not None:
                        self.set_learning_rate(_schedule_rate(schedule, first + step))
                    step += 1
                    loss = self._train(x[batch], y[batch])
                    total += loss * len(batch)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                losses.append(total / full)
        finally:
            if bar is not None:
                bar.close()
        return losses

    def _epoch_samples(self, samples: int, batch_size: int) -> int:
        """Samples one ``fit`` epoch trains on: a file with a fixed batch size skips the last
        partial batch."""
        return samples if self.batch_size is None else samples - samples % batch_size

    def steps_per_epoch(self, samples: int, batch_size: int) -> int:
        """``train`` steps in one ``fit`` epoch over ``samples`` samples.

        Example:
            >>> trainer.steps_per_epoch(1437, 32)   # 45 (44 with a fixed batch size of 32)
        """
        return -(-self._epoch_samples(samples, batch_size) // batch_size)

    # -- inference --------------------------------------------------------------------------

    def infer(self, x: Any) -> np.ndarray:
        """The model's output for ``x`` through the ``infer`` signature, ``(N, classes)``.

        Probabilities if the exported model ended in softmax, else logits: ``output_kind``
        says which (the signature's output tensor is named after it).
        """
        return self._infer(self._check_x(x))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """``infer`` on inputs already checked."""
        runner = self._runners["infer"]
        return np.concatenate([runner(x=x[i:i + INFER_BATCH])[self.output_kind]
                               for i in range(0, len(x), INFER_BATCH)])

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy of the current weights on ``(x, y)``.

        Returns:
            ``{"loss": float, "accuracy": float}``.
        """
        x = self._check_x(x)
        y = self._check_y(y, len(x))
        output = self._infer(x).astype(np.float64)
        if self.output_kind == "probabilities":
            log_probs = np.log(np.clip(output, 1e-12, 1.0))
        else:  # logits: a stable log-softmax
            shifted = output - output.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        target = np.eye(self.num_classes)[y] if self.sparse_labels else y
        labels = y if self.sparse_labels else y.argmax(axis=1)
        return {"loss": float(-(target * log_probs).sum(axis=1).mean()),
                "accuracy": float((output.argmax(axis=1) == labels).mean())}

    # -- weights ----------------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self._runners["save"]().items()}

    def get_weights(self) -> list[np.ndarray]:
        """The trainable weights, in ``weight_specs`` order, through the ``save`` signature."""
        state = self._state()
        return [state[name] for name, _, _ in self.weight_specs]

    def get_optimizer_state(self) -> list[np.ndarray]:
        """The optimizer's state, in ``slot_specs`` order (plain SGD: the step counter alone)."""
        state = self._state()
        return [state[name] for name, _, _ in self.slot_specs]

    def _checked(self, values: Sequence[Any], specs: list[tuple[str, tuple, np.dtype]],
                 what: str) -> list[np.ndarray]:
        if isinstance(values, (np.ndarray, str, bytes)) or not isinstance(values, Sequence):
            raise InvalidArgumentError(f"{what} must be a list of {len(specs)} arrays, got "
                                       f"{type(values).__name__}")
        if len(values) != len(specs):
            raise InvalidArgumentError(f"{what} has {len(values)} arrays; model {self.name} has "
                                       f"{len(specs)}: {[name for name, _, _ in specs]}")
        checked = []
        for value, (name, shape, dtype) in zip(values, specs):
            array = np.asarray(value)
            if array.dtype.kind != "f":
                raise InvalidArgumentError(f"{what}: {name!r} has dtype {array.dtype}; it must "
                                           f"be a float array ({dtype})")
            if array.shape != shape:
                raise InvalidArgumentError(f"{what}: {name!r} has shape {array.shape}; model "
                                           f"{self.name} expects {shape}")
            array = array.astype(dtype)
            bad = int((~np.isfinite(array)).sum())
            if bad:
                raise InvalidArgumentError(f"{what}: {name!r} holds {bad} NaN or infinite "
                                           f"values (after conversion to {dtype}); refused, "
                                           "the model's weights are unchanged")
            checked.append(array)
        return checked

    def _restore(self, weights: list[np.ndarray], slots: list[np.ndarray],
                 learning_rate: np.float32 | None = None) -> None:
        """Assigns checked arrays through ``restore``; a rate of None keeps the current one."""
        named = {name: value for (name, _, _), value in zip(self.weight_specs, weights)}
        named.update({name: value for (name, _, _), value in zip(self.slot_specs, slots)})
        if self._rate_in_state:
            # The file keeps its rate when given one that is not > 0 (graph.py): 0 keeps it.
            named[LEARNING_RATE] = np.float32(0.0 if learning_rate is None else learning_rate)
        self._runners["restore"](**named)
        if learning_rate is not None and not self._rate_in_state:
            self.set_learning_rate(learning_rate)

    def set_weights(self, weights: Sequence[Any], *, reset_optimizer: bool = True) -> None:
        """Sets the trainable weights through the ``restore`` signature.

        All arrays are checked before anything is written, so a refused call leaves the model
        as it was.

        Args:
            weights: One float array per ``weight_specs`` entry, in that order.
            reset_optimizer: Start a fresh optimizer state (zero momenta and Adam moments,
                ``global_step`` 0), as Keras does for a newly compiled model; what a federated
                client wants each round. False keeps the current state. The learning rate is
                kept either way (set it with ``set_learning_rate``). Defaults to True.

        Raises:
            InvalidArgumentError: Wrong count, shape or dtype, or NaN/inf; names the weight.
        """
        checked = self._checked(weights, self.weight_specs, "weights")
        slots = ([np.zeros(shape, dtype) for _, shape, dtype in self.slot_specs]
                 if reset_optimizer else self.get_optimizer_state())
        self._restore(checked, slots)
        if reset_optimizer:
            self._steps_counted = 0

    def reset_optimizer(self) -> None:
        """Zeroes the optimizer's state (momenta, Adam's moments, ``global_step``); weights and
        learning rate unchanged."""
        self.set_weights(self.get_weights(), reset_optimizer=True)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the weights, optimizer state, step and rate to an ``.npz``, atomically.

        The arrays are the ``save`` signature's outputs, by name: ``w...`` weights, ``s...``
        optimizer state (the step counter last) and ``learning_rate`` (a float32 scalar).

        Example:
            >>> trainer.save("outputs/checkpoint.npz")
        """
        state = self._state()
        if not self._rate_in_state and LEARNING_RATE_SIGNATURE in self._runners:
            state[LEARNING_RATE] = np.float32(self.learning_rate)  # an older file's save lacks it
        buffer = io.BytesIO()
        np.savez(buffer, **state)
        atomic_write_bytes(path, buffer.getvalue())

    def restore(self, path: str | os.PathLike) -> None:
        """Loads a checkpoint written by ``save``: weights, optimizer state, step and rate.

        The file's arrays are checked (names, shapes, dtypes, finite values, sizes declared
        in the headers; a whole step in 0..2**24; a rate > 0) before any is passed to the
        model, so a refused file changes nothing. A checkpoint saved before the step and the
        rate were kept (an SGD one lacks the step, any lacks ``learning_rate``) still
        restores: ``global_step`` is then 0 (a schedule starts over, as it did then) and the
        rate stays the one in effect.

        Raises:
            DataError: The file is missing, not an ``.npz``, lacks an array, or holds one
                this model does not have.
            InvalidArgumentError: An array has the wrong shape or dtype or NaN/inf, the step
                is not a whole number in 0..2**24, or the rate is not a finite number > 0.

        Example:
            >>> trainer.restore("outputs/checkpoint.npz")
            >>> trainer.global_step, trainer.learning_rate
            (135, 0.00049)
        """
        where = f"checkpoint {os.fspath(path)!r}"
        required = [n for n, _, _ in self.weight_specs + self.slot_specs if n != self._step_name]
        optional = [n for n in (self._step_name, LEARNING_RATE) if n is not None]
        if not self._rate_in_state and LEARNING_RATE_SIGNATURE not in self._runners:
            optional.remove(LEARNING_RATE)  # a file whose rate cannot change
        headers = npz_headers(path, "checkpoint")
        extra = sorted(set(headers) - set(required) - set(optional))
        if extra:
            raise DataError(f"{where} holds arrays {extra[:5]} that model {self.name} does not "
                            "have; it was saved from another model")
        arrays = load_npz(path, "checkpoint",
                          keys=required + [n for n in optional if n in headers])
        weights = self._checked([arrays[n] for n, _, _ in self.weight_specs], self.weight_specs,
                                where)
        # An older checkpoint without the step: a fresh count, as a schedule had then.
        slots = self._checked([arrays[n] if n in arrays else np.zeros(shape, dtype)
                               for n, shape, dtype in self.slot_specs], self.slot_specs, where)
        if self._step_name is not None:
            step = float(slots[[n for n, _, _ in self.slot_specs].index(self._step_name)])
            if not (step.is_integer() and 0 <= step <= MAX_STEP):
                raise InvalidArgumentError(f"{where}: the step counter {self._step_name!r} is "
                                           f"{step}; it must be a whole number of steps in "
                                           f"0..{MAX_STEP}")
        rate = (_checkpoint_rate(arrays[LEARNING_RATE], where) if LEARNING_RATE in arrays
                else None)
        self._restore(weights, slots, rate)
        self._steps_counted = 0


def _checkpoint_rate(value: np.ndarray, where: str) -> np.float32:
    """A checkpoint's ``learning_rate``: one finite float > 0, as ``set_learning_rate`` takes."""
    if value.shape != () or value.dtype.kind != "f":
        raise InvalidArgumentError(f"{where}: {LEARNING_RATE!r} has shape {value.shape} and "
                                   f"dtype {value.dtype}; save writes one float32 number "
                                   "there: the file was altered or written by something else")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused
        rate = np.float32(value)
    if not (np.isfinite(rate) and rate > 0):
        raise InvalidArgumentError(f"{where}: {LEARNING_RATE!r} is {value}; it must be a "
                                   "finite number > 0 (in float32): the file was altered or "
                                   "written by something else")
    return rate


def _schedule_rate(schedule: Callable[[int], Any], step: int) -> float:
    """``schedule(step)`` as a float (a Keras schedule returns a 0-d tensor)."""
    value = schedule(step)
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"the learning-rate schedule returned {value!r} for step "
                                   f"{step}; it must return a number") from None
