"""``python -m meshgen`` and the ``meshgen`` console script.

The command line is imported inside :func:`run`, so a Ctrl-C while Python is still loading it (up to a second on a
busy machine) ends with exit code 130 and one line, like a Ctrl-C at any later moment, not with a traceback. Only
``sys`` is imported before that: every other import is inside the guarded part.
"""

import sys


def run() -> None:
    """Load the command line and run it; it exits with the code :mod:`meshgen.errors` assigns."""
    try:
        from meshgen.cli import main

        main()
    except BaseException as exc:  # only before the command line's own exit path is in place
        from meshgen.errors import ExitCode, exit_code

        if exit_code(exc) is not ExitCode.INTERRUPTED:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    run()
