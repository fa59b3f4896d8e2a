"""One exception root, one exit-code vocabulary.

Every error meshgen raises on purpose is a :class:`MeshgenError`. Errors about user input carry where the
problem is (:class:`Location`: file, YAML document, field path) and how to fix it, so the CLI can print
``file:line: path: reason`` without a traceback. The mapping from exception (or a command's result) to exit code
lives here and only here (:func:`exit_code`, :func:`result_code`); the CLI's entry point is the one caller.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

FieldPath = tuple[str | int, ...]


class ExitCode(enum.IntEnum):
    """Process exit codes, following ``kubectl diff``."""

    OK = 0
    CHANGES = 1  # only ever "changes pending" (diff), never a failure
    ERROR = 2
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process Ctrl-C stopped


def format_path(path: FieldPath) -> str:
    """Render a field path the way kubectl does: ``spec.forks[0].forkOf.name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class Location(NamedTuple):
    """Where in the user's input something is: a file, the document inside it, and a field path.

    ``line`` is 1-based and filled in when known (parse errors know it; semantic errors are located
    lazily from ``path`` by :func:`meshgen.documents.locate`). A tuple, because the planner makes one for
    every fork whether or not anything is wrong, and tuples are cheap to make.
    """

    source: str
    document: int = 0
    path: FieldPath = ()
    line: int | None = None

    def at(self, *path: str | int) -> Location:
        """The same document, deeper in its field tree."""
        return Location(self.source, self.document, self.path + tuple(path), None)

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {format_path(self.path)}" if self.path else where


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what, and how to fix it."""

    location: Location | None
    message: str
    fix: str | None = None

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class MeshgenError(Exception):
    """Root of every error meshgen raises deliberately; the CLI maps it to an exit code and a message."""

    exit_code: ExitCode = ExitCode.ERROR


class InvalidInput(MeshgenError):
    """The input (specs, baseline, policy) is wrong. Carries every problem found, sorted, so a user fixes
    them in one pass rather than one per run."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems, key=_problem_order))
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"error: {p.render()}" for p in self.problems)

    @classmethod
    def one(cls, location: Location | None, message: str, fix: str | None = None) -> InvalidInput:
        """An error with a single problem."""
        return cls([Problem(location, message, fix)])

    def __str__(self) -> str:
        return self.render()


def _problem_order(p: Problem) -> tuple[str, int, int, str, str]:
    loc = p.location
    if loc is None:
        return ("", 0, 0, "", p.message)
    return (loc.source, loc.document, loc.line or 0, format_path(loc.path), p.message)


def raise_if_any(problems: Iterable[Problem]) -> None:
    """Raise :class:`InvalidInput` carrying ``problems`` if there are any."""
    found = list(problems)
    if found:
        raise InvalidInput(found)


class ClusterError(MeshgenError):
    """Talking to the cluster failed in a way the user must act on (permissions, conflicts, unreachable)."""


class EnvironmentProblem(MeshgenError):
    """Something outside meshgen's input is missing: a binary, a free port, a toolchain."""


class CannotRun(EnvironmentProblem):
    """A test environment cannot run what it was given, and says why (reported as skipped, never as passed)."""


class ChecksFailed(MeshgenError):
    """Checks ran and some failed (golden cases, traffic expectations); the report is already printed, the
    message sums it up."""


def exit_code(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ended a command: 130 for an interrupt (also when a library or Python
    re-raised it as another exception, chaining the interrupt), a meshgen error's own code, 0 for a clean
    ``SystemExit``, and 2 for everything else: usage errors, unexpected errors, any other exit a library attempts
    (never 1, which means "changes pending")."""
    cause: BaseException | None = exc
    while cause is not None:  # Python too wraps an interrupt (in a class body being built: RuntimeError)
        if isinstance(cause, KeyboardInterrupt):
            return ExitCode.INTERRUPTED
        cause = cause.__cause__
    if isinstance(exc, MeshgenError):
        return exc.exit_code
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return ExitCode.OK
    return ExitCode.ERROR


def result_code(result: object) -> ExitCode:
    """The exit code for what a command returned: nothing is success; a command that has something to report
    without failing (``diff``: changes pending) returns its :class:`ExitCode`; a bare integer is a library's own
    clean exit (``--help``), and any integer other than 0 is an error."""
    if result is None:
        return ExitCode.OK
    if isinstance(result, ExitCode):
        return result
    return ExitCode.OK if result == 0 else ExitCode.ERROR
