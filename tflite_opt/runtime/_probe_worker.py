"""Child-process worker: load, allocate and invoke a .tflite once; report by exit code.

Run as a script (``python _probe_worker.py MODEL [num_threads]``) so that it imports
only LiteRT and numpy, not tflite_opt or TensorFlow: it must start fast. Exit 0:
the model ran. Exit 3: the runtime raised (message on stderr). Death by a signal
is what the parent is guarding against.
"""

import sys


def main() -> int:
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT missing: TensorFlow's interpreter is the fallback
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    try:
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        for detail in interpreter.get_output_details():
            interpreter.get_tensor(detail["index"])
    except Exception as exc:  # noqa: BLE001 - any runtime refusal is reported, not raised
        print(" ".join(f"{type(exc).__name__}: {exc}".split())[:500], file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
