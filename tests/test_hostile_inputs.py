"""Hostile and broken inputs: model files that would run code, resource bombs, bad recipes.

Every hostile file is built here, independently of the code under test: a tf_keras
``Lambda`` whose bytecode runs ``touch MARKER`` saved as ``.h5`` and SavedModel, a
``.keras`` whose config.json names ``pydoc.pipepager`` (a shell command through
tf_keras' module import), a YAML alias bomb, ``.tflite`` files edited with the TFLite
schema, ``.npz`` files whose headers declare more than they hold. The scripts must end
each with exit code 2, one ``error:`` line, nothing written, and no marker file; control
tests show that the payloads do run when the user says they trust the file.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tflite_opt.errors import (DataError, InvalidTFLiteError, ModelLoadError, RecipeError,
                               UnsafeModelError)

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30


def _lambda_touching(marker: Path):
    # eval, so the path is a constant inside the marshalled bytecode (not a global of
    # this module, which a loading process would not have).
    return eval(f"lambda t: (__import__('os').system('touch {marker}'), t)[1]")  # noqa: S307


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return path.exists()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Hostile model files, their marker files, and a clean .keras model."""
    from tflite_opt._keras import keras

    root = tmp_path_factory.mktemp("hostile")
    files = {}
    suffixes = {"h5": "evil.h5", "saved_model": "evil_saved_model", "keras_lambda": "lambda.keras"}
    for kind, file_name in suffixes.items():
        marker = root / f"ran_{kind}"
        inp = keras.Input((4,))
        x = keras.layers.Dense(3, name="d1")(inp)
        x = keras.layers.Lambda(_lambda_touching(marker), name="evil")(x)
        out = keras.layers.Dense(2, activation="softmax", name="d2")(x)
        model = keras.Model(inp, out)
        path = root / file_name
        model.save(path, **({"save_format": "tf"} if kind == "saved_model" else {}))
        assert marker.exists()  # building the model ran the payload: it is live
        marker.unlink()
        files[kind] = (path, marker)

    inp = keras.Input((4,))
    x = keras.layers.Dense(3, name="d1")(inp)
    clean = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="d2")(x))
    clean.save(root / "clean.keras")
    files["clean"] = (root / "clean.keras", None)

    # A .keras whose Lambda names pydoc.pipepager: tf_keras imports pydoc and calls
    # pipepager(tensor, cmd=...), which starts the shell command, although safe_mode is on.
    marker = root / "ran_keras"
    with zipfile.ZipFile(root / "clean.keras") as src:
        config = json.loads(src.read("config.json"))
        layers = config["config"]["layers"]
        layers.insert(2, {
            "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "name": "evil", "build_config": {"input_shape": [None, 3]},
            "inbound_nodes": [[["d1", 0, 0, {}]]],
            "config": {"name": "evil", "trainable": True, "dtype": "float32",
                       "function": {"module": "pydoc", "class_name": "function",
                                    "config": "pipepager", "registered_name": "function"},
                       "function_type": "function", "module": "pydoc", "output_shape": None,
                       "output_shape_type": "raw", "output_shape_module": None,
                       "arguments": {"cmd": f"touch {marker}"}}})
        layers[3]["inbound_nodes"] = [[["evil", 0, 0, {}]]]
        with zipfile.ZipFile(root / "evil.keras", "w") as out:
            for item in src.infolist():
                out.writestr(item, json.dumps(config) if item.filename == "config.json"
                             else src.read(item))
    files["keras"] = (root / "evil.keras", marker)
    return files


# ------------------------------------------------------------------ models: Python API


@pytest.mark.parametrize("kind", ["h5", "saved_model", "keras", "keras_lambda"])
def test_load_model_hostile_file_refused_before_any_code_runs(hostile, kind):
    from tflite_opt import load_model

    path, marker = hostile[kind]
    with pytest.raises(UnsafeModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "'evil'" in message and "trust_model" in message and str(path) in message
    assert not _wait_for(marker, 1.0)


def test_load_model_trusted_h5_runs_its_lambda(hostile):
    """Control: the .h5 payload is live, and trust_model=True is the way to run it."""
    from tflite_opt import load_model

    path, marker = hostile["h5"]
    model = load_model(path, trust_model=True)
    assert [layer.name for layer in model.layers][2] == "evil"
    assert _wait_for(marker, 5.0)
    marker.unlink()


def test_load_model_trusted_keras_runs_the_named_module_function(hostile):
    """Control: tf_keras imports pydoc for the .keras payload even in safe_mode."""
    from tflite_opt import load_model

    path, marker = hostile["keras"]
    with pytest.raises(ModelLoadError):  # pipepager then fails on the symbolic tensor
        load_model(path, trust_model=True)
    assert _wait_for(marker, 10.0)
    marker.unlink()


def test_load_model_clean_keras_loads(hostile):
    from tflite_opt import load_model

    model = load_model(hostile["clean"][0])
    assert [layer.name for layer in model.layers][1:] == ["d1", "d2"]


def test_load_model_custom_layer_allowed_only_when_passed(tmp_path):
    from tflite_opt import load_model
    from tflite_opt._keras import keras

    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inp = keras.Input((3,))
    keras.Model(inp, Doubling(name="twice")(inp)).save(tmp_path / "custom.keras")
    with pytest.raises(UnsafeModelError, match="'twice'.*names module"):
        load_model(tmp_path / "custom.keras")
    model = load_model(tmp_path / "custom.keras", custom_objects={"Doubling": Doubling})
    np.testing.assert_allclose(model(np.ones((1, 3), np.float32)).numpy(), 2.0)


def test_convert_saved_model_converts_from_its_graph_without_running_the_lambda(hostile):
    """A SavedModel converts from its traced graph; Keras never deserializes the Lambda."""
    from tflite_opt import convert

    path, marker = hostile["saved_model"]
    result = convert(path, "float32")
    assert result.size_bytes > 0
    assert not _wait_for(marker, 1.0)


@pytest.mark.parametrize("config, flagged", [
    # Keras 3 .keras formats (module / class_name / registered_name).
    ({"module": "keras.layers", "class_name": "Dense", "registered_name": None,
      "config": {"name": "d", "activation": {"module": "keras.activations",
                                             "class_name": "function", "config": "relu",
                                             "registered_name": "relu"}}}, []),
    ({"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "f", "function": {"class_name": "__lambda__", "config": {"code": "4wEA"}}}},
     ["Lambda", "__lambda__"]),
    ({"module": "keras.layers", "class_name": "Dense", "config": {
        "name": "d", "activation": {"module": "builtins", "class_name": "function",
                                    "config": "exec"}}}, ["function"]),
    ({"module": "keras.layers", "class_name": "Dense", "config": {
        "name": "d", "activation": {"module": "tensorflow.io", "class_name": "function",
                                    "config": "write_file"}}}, ["function"]),
    ({"module": "my_package.layers", "class_name": "Mine", "registered_name": "pkg>Mine",
      "config": {"name": "m"}}, ["Mine"]),
    # tf_keras' RNN cell wrappers unmarshal a "lambda" dropout/residual function too.
    ({"class_name": "ResidualWrapper", "config": {
        "name": "r", "residual_fn": ["4wEA", None, None], "residual_fn_type": "lambda",
        "cell": {"class_name": "GRUCell", "config": {"name": "g", "units": 2}}}},
     ["ResidualWrapper"]),
    # tfmot wrappers and tf_keras legacy (no module) configs are Keras' own.
    ({"module": "tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper",
      "class_name": "PruneLowMagnitude", "config": {"name": "prune_low_magnitude_d"}}, []),
    ({"class_name": "Dense", "config": {"name": "d", "units": 3}}, []),
])
def test_find_unsafe_objects_flags_code_and_foreign_modules(config, flagged):
    from tflite_opt.models.safety import find_unsafe_objects

    assert [u.class_name for u in find_unsafe_objects(config)] == flagged


def test_find_unsafe_objects_allows_registered_names_and_survives_deep_nesting():
    from tflite_opt.models.safety import find_unsafe_objects

    mine = {"module": "my_package.layers", "class_name": "Mine", "registered_name": "pkg>Mine",
            "config": {"name": "m"}}
    assert find_unsafe_objects(mine, allowed_names={"pkg>Mine"}) == []
    deep: list = []
    node = deep
    for _ in range(50_000):  # deeper than Python's recursion limit
        node.append([])
        node = node[0]
    node.append({"class_name": "Lambda", "config": {"name": "deep"}})
    assert [u.layer for u in find_unsafe_objects(deep)] == ["deep"]


# ------------------------------------------------------------------ recipes


def _recipe_cases() -> list[tuple[str, bytes, str]]:
    laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefghi", "bcdefghij"))
    return [
        ("bomb.yaml", (laughs + "stages: [*j]\n").encode(), "alias"),
        ("latin1.yaml", "stages: [{type: prune}]  # caf\xe9\n".encode("latin-1"), "UTF-8"),
        ("intkey.yaml", b"1: x\nstages: [{type: prune}]\n", "recipe key 1"),
        ("nullkey.yaml", b"~: x\nstages: [{type: prune}]\n", "is null"),
        ("typelist.yaml", b"stages: [{type: [prune]}]\n", "stages[0].type"),
        ("skip.yaml", b"policy: {skip: dense1}\nstages: [{type: prune}]\n", "policy.skip"),
        ("only.yaml", b"policy: {only: [1, 2]}\nstages: [{type: prune}]\n", "policy.only"),
        ("sparsity.yaml", b"policy: {sparsity: [0.5]}\nstages: [{type: prune}]\n",
         "policy.sparsity"),
        ("clusters.yaml", b"stages: [{type: cluster, number_of_clusters: 50000}]\n",
         "number_of_clusters"),
        ("epochs.yaml", b"stages: [{type: prune, epochs: 1000000000}]\n", "epochs"),
        ("pyobj.yaml", b"stages: !!python/object/apply:os.system ['touch MARKER']\n",
         "could not be parsed"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "could not be parsed"),
    ]


@pytest.mark.parametrize("name, content, expected", _recipe_cases(),
                         ids=[c[0] for c in _recipe_cases()])
def test_recipe_hostile_file_one_short_error_naming_key_and_file(tmp_path, name, content,
                                                                  expected):
    from tflite_opt import Recipe

    path = tmp_path / name
    path.write_bytes(content.replace(b"MARKER", str(tmp_path / "ran").encode()))
    with pytest.raises(RecipeError) as info:
        Recipe.from_file(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert len(message) < 1000
    assert not (tmp_path / "ran").exists()


def test_layer_policy_string_for_a_list_is_refused_not_split_into_letters():
    from tflite_opt import LayerPolicy

    with pytest.raises(RecipeError, match=r"policy.skip.*\[dense1\]"):
        LayerPolicy(skip="dense1")
    assert LayerPolicy(skip=["dense1"]).skip == ("dense1",)


# ------------------------------------------------------------------ .tflite files


@pytest.fixture(scope="module")
def tflite_bytes():
    from tflite_opt import convert
    from tflite_opt._keras import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 3, name="c"),
                              keras.layers.Flatten(), keras.layers.Dense(2, name="d")])
    x = np.random.default_rng(0).normal(size=(20, 4, 4, 1)).astype(np.float32)
    return convert(model, "int8", representative_data=x).tflite_bytes


def _edit(data: bytes, change) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    change(model.subgraphs[0])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _per_channel(subgraph):
    return next(t for t in subgraph.tensors if t.quantization is not None
                and t.quantization.scale is not None and len(t.quantization.scale) > 1)


def _huge_input(subgraph):  # int8 [1, 65536, 65536, 64]: 256 GiB
    subgraph.tensors[subgraph.inputs[0]].shape = np.array([1, 2**16, 2**16, 64], np.int32)


def _bad_quantized_dimension(subgraph):
    _per_channel(subgraph).quantization.quantizedDimension = 7


def _zero_points_mismatch(subgraph):
    q = _per_channel(subgraph).quantization
    q.zeroPoint = np.zeros(len(q.scale) + 1, np.int64)


@pytest.mark.parametrize("change, expected", [
    (_huge_input, "256.0 GiB"),
    (_bad_quantized_dimension, "dimension 7"),
    (_zero_points_mismatch, "zero points"),
])
def test_read_tflite_hostile_tensor_declarations_refused(tflite_bytes, change, expected):
    from tflite_opt.runtime import inspect_model, read_tflite

    hostile = _edit(tflite_bytes, change)
    for call in (lambda: read_tflite(hostile, max_tensor_bytes=4 * GiB),
                 lambda: inspect_model(hostile)):
        with pytest.raises(InvalidTFLiteError, match=expected):
            call()
    read_tflite(tflite_bytes, max_tensor_bytes=4 * GiB)  # the unedited model passes


def test_read_tflite_tensor_limit_is_the_declared_bytes(tflite_bytes):
    """The bound is exact: int8 input [1, 4, 4, 1] declares 16 bytes."""
    from tflite_opt.runtime import read_tflite

    sizes = [16, 12 * 2, 3 * 9]  # input, dense kernel [2, 12] int8, conv kernel [3, 3, 3, 1]
    read_tflite(tflite_bytes, max_tensor_bytes=max(sizes))
    with pytest.raises(InvalidTFLiteError, match="27 B"):
        read_tflite(tflite_bytes, max_tensor_bytes=max(sizes) - 1)


def _many_inputs(count: int, rows: int):
    """``count`` more graph inputs, each int8 [rows, 2**20]: ``rows`` MiB.

    Each is under a per-tensor limit, but the interpreter allocates every graph input at its
    declared shape and keeps them all for the whole run: together ``count * rows`` MiB.
    """
    from ai_edge_litert import schema_py_generated as schema

    def change(subgraph):
        for _ in range(count):
            tensor = schema.TensorT()
            tensor.shape, tensor.type, tensor.buffer = np.array([rows, 2**20], np.int32), 9, 0
            tensor.name = f"hostile_{len(subgraph.tensors)}".encode()
            subgraph.tensors.append(tensor)
            subgraph.inputs = list(subgraph.inputs) + [len(subgraph.tensors) - 1]
    return change


def test_read_tflite_arena_limit_is_the_live_bytes(tflite_bytes):
    """The 4 non-constant tensors (input 16 B, conv out 12 B, reshape 12 B, output 2 B) are
    alive together at the RESHAPE, each in a 64-byte aligned slot: 256 bytes of arena."""
    from tflite_opt.runtime import read_tflite
    from tflite_opt.runtime.allocation_guard import arena_estimate

    assert arena_estimate(tflite_bytes).per_subgraph == (4 * 64,)
    read_tflite(tflite_bytes, max_arena_bytes=256)
    with pytest.raises(InvalidTFLiteError, match=r"256 B of arena .* more than the 255 B"):
        read_tflite(tflite_bytes, max_arena_bytes=255)


def test_read_tflite_many_tensors_alive_together_refused(tflite_bytes, monkeypatch):
    """Each tensor is 1/8 of the limit, so the per-tensor check passes; 16 of them are 2x."""
    from tflite_opt.limits import usable_memory_bytes
    from tflite_opt.runtime import inspect_model, read_tflite
    from tflite_opt.runtime.allocation_guard import LIMIT_ENV_VAR

    rows = usable_memory_bytes() // 8 // 2**20 + 1
    hostile = _edit(tflite_bytes, _many_inputs(16, rows))
    message = (r"20 non-constant tensors alive at once need .* tensor \d+ 'hostile_\d+' of "
               rf"subgraph 0 \[{rows}, 1048576\] int8 .*and 15 more.*{LIMIT_ENV_VAR}=N")
    for call in (lambda: read_tflite(hostile), lambda: inspect_model(hostile)):
        with pytest.raises(InvalidTFLiteError, match=message):
            call()
    # The override: an explicit limit, or the variable for scripts (a machine with swap).
    assert read_tflite(hostile, max_arena_bytes=16 * rows * 2**20 + 256) == hostile
    monkeypatch.setenv(LIMIT_ENV_VAR, str(16 * rows * 2**20 + 256))
    assert read_tflite(hostile) == hostile
    monkeypatch.setenv(LIMIT_ENV_VAR, "lots")
    with pytest.raises(ValueError, match=f"{LIMIT_ENV_VAR}='lots' must be a positive number"):
        read_tflite(hostile)


# ------------------------------------------------------------------ .npy / .npz files


def _npz_with_header_only(path: Path, shape: tuple[int, ...], payload_bytes: int) -> None:
    """An .npz whose x_train header declares ``shape`` float32 over ``payload_bytes`` zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": shape})
            for _ in range(payload_bytes // 2**22):
                member.write(bytes(2**22))
        for key in ("y_train", "x_test", "y_test"):
            buf = io.BytesIO()
            np.save(buf, np.zeros(3, np.int64))
            archive.writestr(f"{key}.npy", buf.getvalue())


def test_load_npz_checks_shape_from_the_header_before_decompressing(tmp_path):
    from tflite_opt.data.arrays import load_npz

    path = tmp_path / "bomb.npz"
    _npz_with_header_only(path, (2**22, 4), 2**26)  # 64 MiB of zeros, ~64 KB on disk
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"samples of shape \(4,\).*expects \(32, 32, 1\)"):
            load_npz(path, "--data", keys=["x_train"], sample_shapes={"x_train": (32, 32, 1)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**26 // 8  # the 64 MiB array was never materialized
    with pytest.raises(DataError, match="64.0 MiB.*more than the 1.0 MiB"):
        load_npz(path, "--data", keys=["x_train"], max_bytes=2**20)


def test_load_npz_header_larger_than_stored_data_is_truncated(tmp_path):
    from tflite_opt.data.arrays import load_npz

    path = tmp_path / "liar.npz"
    _npz_with_header_only(path, (2**40,), 0)  # declares 4 TiB, stores nothing
    with pytest.raises(DataError, match="4.0 TiB|truncated"):
        load_npz(path, "--data", keys=["x_train"])


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_arrays_refused_without_unpickling(tmp_path, suffix):
    from tflite_opt.data.calibration import load_evaluation_data
    from tflite_opt.data.arrays import load_npy

    objects = np.array([{"a": 1}, None], dtype=object)
    path = tmp_path / f"objects{suffix}"
    if suffix == ".npy":
        np.save(path, objects, allow_pickle=True)
        call = lambda: load_npy(path, "--representative_data")  # noqa: E731
    else:
        np.savez(path, x=objects, y=np.zeros(2))
        call = lambda: load_evaluation_data(path, "--eval_data")  # noqa: E731
    with pytest.raises(DataError, match="never unpickles"):
        call()


# ------------------------------------------------------------------ the scripts


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 * GiB, 4 * GiB))


def _script(name: str, *args: str, limit_memory: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
                          preexec_fn=_limit_address_space if limit_memory else None)


@pytest.fixture(scope="module")
def script_runs(hostile, tflite_bytes, tmp_path_factory):
    """Each hostile input through its script, two at a time: {case: (proc, output, marker)}."""
    root = tmp_path_factory.mktemp("scripts")
    bomb = root / "bomb.yaml"
    bomb.write_bytes(_recipe_cases()[0][1])
    assert 400 <= len(bomb.read_bytes()) <= 520  # the 450-500 byte bomb of the issue
    data_bomb = root / "data.npz"
    _npz_with_header_only(data_bomb, (2**22, 4), 2**26)
    huge = root / "huge.tflite"
    huge.write_bytes(_edit(tflite_bytes, _huge_input))
    six = root / "six.tflite"  # int8 [1, 98304, 32768, 2]: 6 GiB
    six.write_bytes(_edit(tflite_bytes, lambda sg: setattr(
        sg.tensors[sg.inputs[0]], "shape", np.array([1, 3 * 2**15, 2**15, 2], np.int32))))
    many = root / "many.tflite"  # 256 more int8 [64, 2**20] graph inputs, 64 MiB each: 16 GiB
    many.write_bytes(_edit(tflite_bytes, _many_inputs(256, 64)))
    bad_qd = root / "bad_qd.tflite"
    bad_qd.write_bytes(_edit(tflite_bytes, _bad_quantized_dimension))
    bad_zp = root / "bad_zp.tflite"
    bad_zp.write_bytes(_edit(tflite_bytes, _zero_points_mismatch))
    out = root / "out"
    cases = {
        "convert_h5": (("convert.py", f"--model={hostile['h5'][0]}", f"--output={out}/h5.tflite"),
                       out / "h5.tflite", hostile["h5"][1], False),
        "optimize_saved_model": (("optimize.py", f"--model={hostile['saved_model'][0]}",
                                  f"--output_dir={out}/sm"), out / "sm", hostile["saved_model"][1],
                                 False),
        "optimize_keras": (("optimize.py", f"--model={hostile['keras'][0]}",
                            f"--output_dir={out}/keras"), out / "keras", hostile["keras"][1],
                           False),
        "optimize_recipe_bomb": (("optimize.py", f"--recipe={bomb}", f"--output_dir={out}/r"),
                                 out / "r", None, False),
        "optimize_npz_bomb": (("optimize.py", f"--data={data_bomb}", f"--output_dir={out}/d"),
                              out / "d", None, False),
        "benchmark_256gib": (("benchmark.py", f"--model={huge}", "--isolate=false",
                              f"--output={out}/b1.json"), out / "b1.json", None, True),
        "benchmark_6gib": (("benchmark.py", f"--model={six}", "--isolate=false",
                            f"--output={out}/b2.json"), out / "b2.json", None, True),
        "benchmark_many_tensors": (("benchmark.py", f"--model={many}", "--isolate=false",
                                    f"--output={out}/b3.json"), out / "b3.json", None, True),
        "inspect_bad_quantized_dimension": (("inspect.py", f"--model={bad_qd}",
                                             f"--output={out}/i1.json"), out / "i1.json", None,
                                            False),
        "inspect_zero_points": (("inspect.py", f"--model={bad_zp}", f"--output={out}/i2.json"),
                                out / "i2.json", None, False),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case: pool.submit(_script, *args, limit_memory=limit)
                   for case, (args, _, _, limit) in cases.items()}
        return {case: (futures[case].result(), output, marker)
                for case, (_, output, marker, _) in cases.items()}


@pytest.mark.parametrize("case", [
    "convert_h5", "optimize_saved_model", "optimize_keras", "optimize_recipe_bomb",
    "optimize_npz_bomb", "benchmark_256gib", "benchmark_6gib", "benchmark_many_tensors",
    "inspect_bad_quantized_dimension", "inspect_zero_points"])
def test_script_hostile_input_exit_2_one_error_line_nothing_written(script_runs, case):
    proc, output, marker = script_runs[case]
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert len(proc.stderr.encode()) < 20_000
    assert "Traceback" not in proc.stderr
    assert not output.exists()
    if marker is not None:
        assert not _wait_for(marker, 1.0)
    if case == "benchmark_many_tensors":  # refused by the arena check, not the per-tensor one
        assert "non-constant tensors alive at once need 16.0 GiB" in errors[0], errors[0]
