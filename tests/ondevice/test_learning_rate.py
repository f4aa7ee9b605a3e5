"""The learning rate set at run time (set_learning_rate), and zero optimizer state made by FILL."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.ondevice.test_runner import _batches, _keras_twin

# One case of each Keras: tf_keras SGD with momentum (exported lr 0.1), Keras 3 Adam (0.01).
RATE_CASES = ("tf_keras-mlp-sgd", "keras3-mlp-adam")


@pytest.mark.parametrize("case_id", RATE_CASES)
def test_steps_at_a_new_rate_match_keras_at_that_rate(exported, digits8, case_id):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    item = exported[case_id]
    exported_rate = item.result.optimizer.learning_rate
    rate = exported_rate * 0.3  # a rate the file was not exported with
    trainer = OnDeviceTrainer(item.result.path)
    assert trainer.learning_rate == pytest.approx(exported_rate, rel=1e-7)  # float32 of it
    keras_model = _keras_twin(item, dataclasses.replace(item.result.optimizer,
                                                        learning_rate=rate))
    batches = _batches(digits8, item.case)[:3]
    device = [trainer.train_step(x, y, learning_rate=rate if i == 0 else None)
              for i, (x, y) in enumerate(batches)]  # set once; it stays for later steps
    keras = [float(np.asarray(keras_model.train_on_batch(x, y))) for x, y in batches]
    assert trainer.learning_rate == pytest.approx(rate, rel=1e-7)
    # Same tolerances as test_runner's match at the exported rate (float32, other op order).
    np.testing.assert_allclose(device, keras, rtol=2e-4, atol=1e-5)
    expected = [w for name in item.result.trainable_layers
                for w in keras_model.get_layer(name).get_weights()]
    for got, want in zip(trainer.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("case_id", RATE_CASES)
def test_two_rates_give_different_weights_in_proportion(exported, digits8, case_id):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    item = exported[case_id]
    x, y = _batches(digits8, item.case)[0]
    initial = OnDeviceTrainer(item.result.path).get_weights()
    deltas = []
    for rate in (0.01, 0.04):
        trainer = OnDeviceTrainer(item.result.path)
        trainer.train_step(x, y, learning_rate=rate)
        deltas.append([w - w0 for w, w0 in zip(trainer.get_weights(), initial)])
    for small, large in zip(*deltas):
        assert not np.array_equal(small, large)
        # A first step is proportional to the rate: SGD's -lr*g (the velocity starts at 0),
        # Adam's -lr*m/(sqrt(v)+eps) with bias-corrected moments of that one gradient. Where
        # the step is well above float32 rounding of the weights (|w| < ~4, ulp ~5e-7):
        big = np.abs(large) > 1e-4
        np.testing.assert_allclose(large[big], 4 * small[big], rtol=2e-2)


def test_schedule_sets_a_rate_before_every_step(exported, digits8):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    path = exported["keras3-mlp-adam"].result.path
    x, y = digits8.x_train[:48], digits8.y_train[:48]
    steps = []

    def warm_up(step):
        steps.append(step)
        return 0.02 * min(1.0, (step + 1) / 4)

    scheduled = OnDeviceTrainer(path)
    losses = scheduled.fit(x, y, epochs=2, batch_size=16, seed=3, learning_rate=warm_up)
    assert steps == list(range(6))  # 3 steps an epoch, counted across epochs
    assert scheduled.learning_rate == pytest.approx(0.02)
    # The same steps by hand, each at its rate: bit-identical (same kernels, same inputs).
    manual = OnDeviceTrainer(path)
    rng = np.random.default_rng(3)
    step, manual_losses = 0, []
    for _ in range(2):
        order = rng.permutation(48)
        batch_losses = []
        for start in range(0, 48, 16):
            batch = order[start:start + 16]
            batch_losses.append(manual.train_step(x[batch], y[batch],
                                                  learning_rate=0.02 * min(1.0, (step + 1) / 4)))
            step += 1
        manual_losses.append(float(np.mean(batch_losses)))
    np.testing.assert_allclose(losses, manual_losses, rtol=1e-6)
    for a, b in zip(scheduled.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A constant rate for the whole fit, and refusals that leave the rate as it was.
    scheduled.fit(x, y, batch_size=16, seed=0, learning_rate=0.005)
    assert scheduled.learning_rate == pytest.approx(0.005)
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "fast"):
        with pytest.raises(InvalidArgumentError, match="finite number > 0"):
            scheduled.set_learning_rate(bad)
    # The schedule continues from the global step: 6 scheduled and 3 constant-rate steps.
    with pytest.raises(InvalidArgumentError, match="schedule returned .* step 9"):
        scheduled.fit(x, y, batch_size=16, learning_rate=lambda step: None)
    with pytest.raises(InvalidArgumentError, match="finite number > 0"):
        scheduled.fit(x, y, batch_size=16, learning_rate=lambda step: -step)
    assert scheduled.learning_rate == pytest.approx(0.005)


@pytest.mark.parametrize("case_id", ["keras3-mlp-adam", "tf_keras-mlp-sgd"])
def test_zero_optimizer_state_is_filled_at_load_not_stored(exported, case_id):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from tflite_opt.ondevice.runner import OnDeviceTrainer
    from tflite_opt.ondevice.zero_fill import fill_zero_initializers

    item = exported[case_id]
    result = item.result
    params = sum(int(np.prod(shape)) for shape in result.weight_shapes)
    # Adam's m and v (SGD's momentum) start at zero for every weight: at least one float32
    # copy of the trainable weights' size was stored before, and is not now.
    assert result.zero_bytes_dropped >= 4 * params
    assert "FILL" in result.op_names and result.flex_ops == 0
    model = flatbuffer_utils.read_model(str(result.path))
    codes = {i: max(c.builtinCode, c.deprecatedBuiltinCode)
             for i, c in enumerate(model.operatorCodes)}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if codes[op.opcodeIndex] == schema.BuiltinOperator.ASSIGN_VARIABLE:
                value = subgraph.tensors[op.inputs[1]]
                data = model.buffers[value.buffer].data
                stored = np.frombuffer(bytes(data), np.uint8) if data is not None else []
                assert len(stored) <= 4 or np.any(stored), value.name  # no stored zeros
    data = result.path.read_bytes()
    assert fill_zero_initializers(data) == (data, 0)  # nothing left to rewrite
    # At load, through the interpreter with XNNPACK (the default): zeros of the right shapes,
    # and the weights the model was exported with.
    trainer = OnDeviceTrainer(result.path)
    state = trainer.get_optimizer_state()
    assert [s.shape for s in state] == [shape for _, shape, _ in trainer.slot_specs]
    assert len(state) >= len(result.weight_shapes) and not any(s.any() for s in state)
    expected = [w for name in result.trainable_layers
                for w in item.model.get_layer(name).get_weights()]
    for got, want in zip(trainer.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


def test_warmup_cosine_rises_linearly_then_decays_towards_zero():
    import math

    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.ondevice.schedules import warmup_cosine

    schedule = warmup_cosine(0.1, total_steps=10, warmup_steps=4)
    rates = [schedule(step) for step in range(10)]
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[4] == 0.1 and all(a > b > 0 for a, b in zip(rates[4:], rates[5:]))
    assert rates[9] == pytest.approx(0.05 * (1 + math.cos(math.pi * 5 / 6)))
    assert warmup_cosine(0.1, total_steps=1)(0) == 0.1
    for args, pattern in (((0.0, 10), "base_rate"), ((0.1, 0), "total_steps"),
                          ((0.1, 10, 10), "warmup_steps"), ((0.1, 10, -1), "warmup_steps")):
        with pytest.raises(InvalidArgumentError, match=pattern):
            warmup_cosine(*args)
