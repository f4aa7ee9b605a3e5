"""Runs `tflite_opt.cli.search`; see `python scripts/search.py --help`."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Replace scripts/ on sys.path so scripts/inspect.py cannot shadow the stdlib inspect.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from tflite_opt.cli.search import cli

    cli()
