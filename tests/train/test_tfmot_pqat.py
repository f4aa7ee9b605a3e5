"""A PQAT file made by tfmot's own scheme (its config names plain 8-bit QAT) loads as PQAT:
every variable and prediction as tfmot's, a warning that names the file and the pruned
layers, and a further ``fit`` keeps every zero (as plain QAT, the way out, it does not).
tfmot's plain QAT of an unpruned model loads as before, without a warning. The rule: a kernel
with at least 1% exact zeros, not all of it, was pruned.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tflite_opt._keras import import_tfmot, keras
from tflite_opt.files import atomic_save_model
from tflite_opt.models.loading import load_model
from tflite_opt.train import quantize_aware
from tflite_opt.train.qat_saving import PreservingQuantizeConfig
from tflite_opt.train.tfmot_qat_weights import load_tfmot_qat_weights
from tflite_opt.train.tfmot_pqat import pruned_kernels

PRUNED = ("conv2", "dense")  # half zeros each; conv1 is left dense, as a policy leaves it


def _model(pruned: bool):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv1"),
                              keras.layers.Conv2D(8, 3, name="conv2"), keras.layers.Flatten(),
                              keras.layers.Dense(10, name="dense")])
    rng = np.random.default_rng(0)
    for name in PRUNED if pruned else ():
        kernel, bias = model.get_layer(name).get_weights()
        flat = kernel.ravel()
        flat[rng.permutation(flat.size)[: flat.size // 2]] = 0.0
        model.get_layer(name).set_weights([flat.reshape(kernel.shape), bias])
    return model


def _fit(model):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 64)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  run_eagerly=True)  # two batches run faster than tracing the QAT graph
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model


def _tfmot_qat(model, pqat: bool):
    tfmot = import_tfmot()
    q = tfmot.quantization.keras
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if pqat \
        else q.default_8bit.Default8BitQuantizeScheme()
    return _fit(q.quantize_apply(q.quantize_annotate_model(model), scheme))


def _name(variable):  # a loaded wrapper's are named quant_conv1/kernel, a built one's conv1/kernel
    return variable.name.split("/")[-1]


def _kernels(model):
    # the variables: after a call, a wrapper's layer.kernel is the fake-quantized tensor
    return {name: model.get_layer(f"quant_{name}")._weight_vars[0][0].numpy()
            for name in ("conv1", *PRUNED)}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_tfmot_pqat_file_loads_as_pqat_and_fit_keeps_every_zero(suffix, tmp_path):
    made = _tfmot_qat(_model(pruned=True), pqat=True)
    path = atomic_save_model(made, tmp_path / f"tfmot_pqat{suffix}")
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 1)).astype(np.float32)

    with pytest.warns(UserWarning, match=r"quant_conv2 \(50\.0% zeros\), quant_dense "
                                         r"\(50\.0% zeros\)") as caught:
        loaded = load_model(path)
    message = str(caught[0].message)
    assert repr(str(path)) in message and f"load_model({str(path)!r}, keep_zeros=False)" in message
    assert "quant_conv1" not in message  # not pruned
    ours = [w for w in loaded.weights if "sparsity_mask" not in w.name]
    assert [w.shape for w in ours] == [w.shape for w in made.weights]
    for a, b in zip(ours, made.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    assert np.array_equal(loaded(x, training=False), made(x, training=False))
    masks = {w.name.split("/")[0]: w.numpy() for w in loaded.weights if "sparsity_mask" in w.name}
    zeros = {name: kernel == 0 for name, kernel in _kernels(made).items()}
    for name in ("conv1", *PRUNED):  # tfmot's masks: 1 where the kernel is non-zero
        assert np.array_equal(masks[f"quant_{name}"], (~zeros[name]).astype(np.float32)), name

    for name, kernel in _kernels(_fit(loaded)).items():
        if name in PRUNED:
            assert zeros[name].mean() == 0.5 and np.all(kernel[zeros[name]] == 0), name
    # As the file says (plain QAT), the same fit trains the zeros away: the check above can fail.
    plain = _fit(load_model(path, keep_zeros=False))
    assert not any("sparsity_mask" in w.name for w in plain.weights)
    assert all(np.mean(_kernels(plain)[name][zeros[name]] == 0) < 0.1 for name in PRUNED)

    if suffix == ".h5":  # saved again, the file records its quantizers: no guess, no warning
        saved = atomic_save_model(loaded, tmp_path / "again.h5")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = load_model(saved)
        assert type(again.get_layer("quant_dense").quantize_config) is PreservingQuantizeConfig
        for a, b in zip(again.weights, loaded.weights):
            assert _name(a) == _name(b) and np.array_equal(a.numpy(), b.numpy()), a.name
    else:  # the explicit way: quantize_aware's PQAT from the pruned model, tfmot's weights
        qat = load_tfmot_qat_weights(quantize_aware(_model(pruned=True), "pqat"), path)
        ours = [w for w in qat.weights if "sparsity_mask" not in w.name]
        assert [w.shape for w in ours] == [w.shape for w in made.weights]
        for a, b in zip(ours, made.weights):
            assert np.array_equal(a.numpy(), b.numpy()), a.name
        for w in qat.weights:  # the masks load_model made, rebuilt from the same zeros
            if "sparsity_mask" in w.name:
                assert np.array_equal(w.numpy(), masks[w.name.split("/")[0]]), w.name


def test_tfmot_plain_qat_file_of_unpruned_model_loads_as_before_without_warning(tmp_path):
    made = _tfmot_qat(_model(pruned=False), pqat=False)
    for suffix in (".keras", ".h5"):
        path = atomic_save_model(made, tmp_path / f"tfmot_qat{suffix}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = load_model(path)
        assert pruned_kernels(loaded) == {}
        assert [_name(w) for w in loaded.weights] == [_name(w) for w in made.weights]
        for a, b in zip(loaded.weights, made.weights):
            assert np.array_equal(a.numpy(), b.numpy()), a.name



def test_pruned_kernels_counts_one_percent_of_exact_zeros_but_not_a_kernel_of_zeros():
    tfmot = import_tfmot()
    model = tfmot.quantization.keras.quantize_model(keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(10, name="a"), keras.layers.Dense(10, name="b"),
         keras.layers.Dense(10, name="c")]))
    # a: 1 zero of 200 weights (0.5%); b: 1 of 100 (1%); c: all zeros (never trained)
    for name, zeros in (("a", 1), ("b", 1), ("c", 100)):
        kernel = model.get_layer(f"quant_{name}")._weight_vars[0][0]
        values = np.random.default_rng(0).uniform(0.1, 1.0, kernel.shape).ravel()
        values[:zeros] = 0.0
        kernel.assign(values.reshape(kernel.shape))
    assert pruned_kernels(model) == {"quant_b": 0.01}


def test_converting_a_tfmot_pqat_file_does_not_guess_or_warn(tmp_path):
    # A converter never trains: it converts what the file says, with no PQAT warning.
    from tflite_opt.convert import convert

    path = atomic_save_model(_tfmot_qat(_model(pruned=True), pqat=True), tmp_path / "pqat.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*keep_zeros.*")
        result = convert(path, "int8")
    assert result.tflite_bytes[4:8] == b"TFL3"
