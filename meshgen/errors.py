"""One exception root, one exit-code vocabulary.

Every error meshgen raises on purpose is a :class:`MeshgenError`. Errors about user input carry where the
problem is (:class:`Location`: file, YAML document, field path) and how to fix it, so the CLI can print
``file:line: path: reason`` without a traceback. The mapping from exception to exit code lives here and only here.
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
    CHANGES = 1
    ERROR = 2


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
