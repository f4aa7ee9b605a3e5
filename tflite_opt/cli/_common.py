"""Shared plumbing of the command-line tools: one-line errors and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags

from tflite_opt.errors import TfliteOptError

EXIT_BAD_INPUT = 2
# An error line is for a person to read; a message that quotes a hostile input (a
# recipe alias bomb, a huge config) must not become a 254 MB line.
MAX_ERROR_CHARS = 2000


def fail(message: str) -> None:
    """Prints ``error: message`` on one line of stderr (at most ~2000 characters), exits 2."""
    text = " ".join(str(message)[:4 * MAX_ERROR_CHARS].split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f"... (message cut at {MAX_ERROR_CHARS} characters)"
    print(f"error: {text}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[Sequence[str]], int | None]) -> None:
    """Runs an absl ``main`` so bad input ends in one stderr line and exit code 2.

    Unknown flags, flag values that fail validation and every ``TfliteOptError``
    raised by the library become ``error: ...`` on stderr and exit code 2
    (absl alone would print its usage and exit 1).
    """

    def guarded(argv: Sequence[str]) -> int | None:
        _quiet_tensorflow_logs()
        try:
            return main(argv)
        except TfliteOptError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("interrupted; no partial output was written", file=sys.stderr)
            sys.exit(130)
        return None

    def parse_flags(argv: list[str]) -> list[str]:
        # absl's --help lists only flags defined in __main__, and ours live in the CLI
        # module; users (and the issues) also type --helpful. Both print the tool's
        # docstring and its own flags with their defaults (--helpfull still lists all).
        if "--help" in argv[1:] or "--helpful" in argv[1:] or "-h" in argv[1:]:
            module = sys.modules[main.__module__]
            print((module.__doc__ or "").strip() + "\n")
            print(flags.FLAGS.module_help(module))
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as exc:
            fail(f"{exc}; see --help for the accepted flags")
        return argv

    app.run(guarded, flags_parser=parse_flags)


def _quiet_tensorflow_logs() -> None:
    """Keeps TensorFlow's INFO lines (checkpoint sharding, ...) off the user's terminal.

    TensorFlow's Python logger prints through its own handler *and* propagates to the
    handler absl installs, so every warning would show twice; ``--verbosity=0`` (absl's
    INFO) brings them all back.
    """
    import logging

    from absl import logging as absl_logging

    if flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)  # TensorFlow's import leaves it at INFO
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.setLevel(logging.WARNING)
    tf_logger.propagate = False


def check_output(output: str, models: Sequence[str]) -> None:
    """Fails unless ``--output`` names a writable file that is none of ``models`` or their sidecars.

    Example:
        >>> check_output("report.json", models=["m.tflite"])  # "m.json" would be refused
    """
    from pathlib import Path

    from tflite_opt.files import check_output_file

    inputs = [item for m in models for item in (
        Path(m), (Path(m).with_suffix(".json"), f"the sidecar of the input model {m!r} "
                  "(read for its labels and preprocessing)"))]
    check_output_file(output, "--output", inputs=inputs)


def reject_extra_args(argv: Sequence[str]) -> None:
    """Fails on positional arguments, which these tools do not take."""
    if len(argv) > 1:
        fail(f"unexpected positional arguments {list(argv[1:])}; all options are --flags "
             "(see --help)")
