"""export_trainable: builtin ops only, the four signatures, the model's math, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ondevice.conftest import CASES, IMAGE, Case, build_model

IDS = [case.id for case in CASES]


@pytest.mark.parametrize("case_id", IDS)
def test_file_has_builtin_ops_only_and_its_signatures(exported, case_id):
    from tflite_opt.runtime.inspection import inspect_model
    from tflite_opt.runtime.model_file import operator_codes, read_tflite

    result = exported[case_id].result
    codes = operator_codes(read_tflite(result.path))
    assert [c.name for c in codes if c.builtin == "CUSTOM"] == []  # no Flex, no custom ops
    assert result.flex_ops == 0 and result.custom_ops == 0
    info = inspect_model(result.path)
    assert not any(name.startswith("Flex") for name in info.op_counts)
    assert set(info.signatures) == {"train", "infer", "save", "restore", "set_learning_rate"}
    # Weights live in resource variables, updated in place by the train signature.
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= set(info.op_counts)
    assert info.signatures["train"]["inputs"] and set(result.signatures) == set(info.signatures)


@pytest.mark.parametrize("case_id", IDS)
def test_export_describes_the_trainable_weights(exported, case_id):
    item = exported[case_id]
    result, model = item.result, item.model
    layers = ["dense1"] if item.case.trainable == ("dense1",) else ["dense1", "classifier"]
    assert result.trainable_layers == tuple(layers)
    assert result.frozen_layers == (() if len(layers) == 2 else ("classifier",))
    expected = [w.shape for name in layers for w in model.get_layer(name).get_weights()]
    assert list(result.weight_shapes) == expected
    assert result.weight_names[0] == "w000_dense1_kernel"
    assert result.keras_flavor == item.case.flavor
    assert result.output == ("probabilities" if item.case.kind == "mlp" else "logits")
    # Per weight: SGD's momentum (if any) or Adam's m and v; then every optimizer's step.
    slots = {"sgd": 2 * len(layers) if dict(item.case.options).get("momentum") else 0,
             "adam": 2 * 2 * len(layers)}
    assert len(result.slot_names) == slots[item.case.optimizer] + 1
    assert result.slot_names[-1] == f"s{slots[item.case.optimizer]:03d}_step"


@pytest.mark.parametrize("case_id", IDS)
def test_infer_signature_matches_the_keras_model(exported, digits8, case_id):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    item = exported[case_id]
    x = digits8.x_test[:50]
    expected = np.asarray(item.model(x, training=False))
    got = OnDeviceTrainer(item.result.path).infer(x)
    # float32 sums of at most 64 products of values below ~4: a few ulps of the result.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_in_the_trainable_part_is_refused_by_name(tmp_path):
    from tflite_opt.errors import UnsupportedLayerError
    from tflite_opt.ondevice.export import export_trainable

    model = build_model(Case("keras3", "cnn", "sgd"))
    # The conv could train (tests/ondevice/test_conv_head.py), but the BatchNorm cannot.
    with pytest.raises(UnsupportedLayerError, match=r"'bn' \(BatchNormalization\) cannot train"
                                                    ".*trainable="):
        export_trainable(model, tmp_path / "m.tflite", trainable="all")
    with pytest.raises(UnsupportedLayerError, match=r"'bn' \(BatchNormalization\)"):
        export_trainable(model, tmp_path / "m.tflite", trainable=["bn", "classifier"])
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_head_after_a_branch_is_refused(tmp_path, flavor):
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.errors import UnsupportedLayerError
    from tflite_opt.ondevice.export import export_trainable

    keras = keras_of_flavor(flavor)
    inputs = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    added = keras.layers.Add(name="add")([a, b])
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(added)
    model = keras.Model(inputs, outputs)
    with pytest.raises(UnsupportedLayerError, match="'add'|'b'"):
        export_trainable(model, tmp_path / "m.tflite", trainable=["a", "out"])


def test_bad_arguments_name_what_to_pass(tmp_path):
    from tflite_opt.errors import InvalidArgumentError, OutputExistsError
    from tflite_opt.ondevice.export import export_trainable

    model = build_model(Case("keras3", "mlp", "sgd"))
    path = tmp_path / "m.tflite"
    for kwargs, pattern in (({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
                            ({"loss": "mse"}, "loss='mse'"),
                            ({"trainable": ["nope"]}, "'nope'.*layers with weights"),
                            ({"trainable": ["flatten"]}, "'flatten', which has no weights"),
                            ({"learning_rate": -1.0}, "learning_rate=-1.0"),
                            ({"optimizer": "adam", "momentum": 0.9}, "momentum"),
                            ({"batch_size": 0}, "batch_size=0")):
        with pytest.raises(InvalidArgumentError, match=pattern):
            export_trainable(model, path, **kwargs)
    path.write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        export_trainable(model, path)
    assert path.read_bytes() == b"x"


def test_image_shape_is_in_the_signatures(exported):
    result = exported[IDS[0]].result
    assert result.input_shape == (IMAGE, IMAGE, 1) and result.num_classes == 10
