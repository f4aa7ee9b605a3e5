"""Runs `tflite_opt.cli.inspect`; see `python scripts/inspect.py --help`."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Replace (not prepend to) scripts/ on sys.path: this file's name would shadow the
    # standard library's `inspect`, which TensorFlow imports.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from tflite_opt.cli.inspect import cli

    cli()
else:
    # Another script in scripts/ ran `import inspect` and found this file first: hand
    # back the standard library module instead of this wrapper.
    import importlib

    _here = str(Path(__file__).resolve().parent)
    _saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _here]
    del sys.modules[__name__]
    try:
        sys.modules[__name__] = importlib.import_module("inspect")
    finally:
        sys.path[:] = _saved
