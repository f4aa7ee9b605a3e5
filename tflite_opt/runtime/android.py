"""The ``adb`` commands that run TFLite's official ``benchmark_model`` on an Android phone.

The commands reproduce a Python benchmark's settings (threads, runs, delegate)
on the device, so a desktop number can be checked where the model will run.
The prebuilt binary is the one TensorFlow publishes for arm64 Android.

Example:
    >>> print("\\n".join(android_benchmark_commands("model.tflite", num_threads=4,
    ...                                             delegate="gpu")))
"""

from __future__ import annotations

import os
import shlex

from tflite_opt.errors import InvalidArgumentError

BENCHMARK_BINARY_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/"
                        "tensorflow/release/lite/tools/nightly/latest/"
                        "android_aarch64_benchmark_model")
DEVICE_DIR = "/data/local/tmp"

# delegate name -> benchmark_model flags selecting it.
ANDROID_DELEGATE_FLAGS: dict[str, tuple[str, ...]] = {
    "xnnpack": ("--use_xnnpack=true",),
    "none": ("--use_xnnpack=false",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
    "hexagon": ("--use_hexagon=true",),
    "external": (),  # filled with --external_delegate_path
}


def android_benchmark_commands(model_path: str, num_threads: int = 1, delegate: str = "xnnpack",
                               num_runs: int = 50, warmup_runs: int = 5,
                               external_library: str | None = None,
                               op_profiling: bool = False) -> list[str]:
    """Shell commands to push ``model_path`` and benchmark it on a phone over ``adb``.

    Args:
        model_path: The local ``.tflite`` file.
        num_threads: ``--num_threads``. Defaults to 1.
        delegate: A key of ``ANDROID_DELEGATE_FLAGS``. Defaults to ``"xnnpack"``.
        num_runs: ``--num_runs``. Defaults to 50.
        warmup_runs: ``--warmup_runs``. Defaults to 5.
        external_library: Delegate library for ``delegate="external"``.
        op_profiling: Add ``--enable_op_profiling=true`` (per-op times). Defaults to False.

    Returns:
        The commands, in order, as strings for a POSIX shell.

    Example:
        >>> android_benchmark_commands("m.tflite", 4, "gpu")[-1]
        'adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite ...'
    """
    if delegate not in ANDROID_DELEGATE_FLAGS:
        raise InvalidArgumentError(f"delegate {delegate!r} is not one of "
                                   f"{sorted(ANDROID_DELEGATE_FLAGS)}")
    if delegate == "external" and not external_library:
        raise InvalidArgumentError("delegate 'external' needs external_library=PATH")
    name = os.path.basename(os.fspath(model_path))
    device_model = f"{DEVICE_DIR}/{name}"
    flags = [f"--graph={device_model}", f"--num_threads={int(num_threads)}",
             f"--num_runs={int(num_runs)}", f"--warmup_runs={int(warmup_runs)}",
             *ANDROID_DELEGATE_FLAGS[delegate]]
    commands = [
        f"curl -L -o android_aarch64_benchmark_model {BENCHMARK_BINARY_URL}",
        f"adb push android_aarch64_benchmark_model {DEVICE_DIR}/benchmark_model",
        f"adb shell chmod +x {DEVICE_DIR}/benchmark_model",
        f"adb push {shlex.quote(os.fspath(model_path))} {device_model}",
    ]
    if delegate == "external":
        lib_name = os.path.basename(external_library)
        commands.append(f"adb push {shlex.quote(external_library)} {DEVICE_DIR}/{lib_name}")
        flags.append(f"--external_delegate_path={DEVICE_DIR}/{lib_name}")
    if op_profiling:
        flags.append("--enable_op_profiling=true")
    commands.append(f"adb shell {DEVICE_DIR}/benchmark_model " + " ".join(flags))
    return commands
