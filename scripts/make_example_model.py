"""Runs `tflite_opt.cli.make_example_model`; see `python scripts/make_example_model.py --helpful`."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tflite_opt.cli.make_example_model import cli

    cli()
