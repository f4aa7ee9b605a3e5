"""Runs `tflite_opt.cli.convert`; see `python scripts/convert.py --helpful`."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tflite_opt.cli.convert import cli

    cli()
