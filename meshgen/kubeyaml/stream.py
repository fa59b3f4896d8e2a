"""A stream cut into documents the way kubectl's ``YAMLOrJSONDecoder`` cuts it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from meshgen.kubeyaml.parsing import Piece, YAMLError

_SEPARATOR = re.compile(r"^---(.*)$", re.MULTILINE)


def split(text: str) -> Iterator[Piece]:
    """The documents of a stream as kubectl's ``YAMLOrJSONDecoder`` cuts them (JSON first if the stream starts
    with ``{``, then lines starting with ``---``)."""
    offset = 0
    lines = _Lines(text)
    if text.lstrip()[:1] == "{":
        decoder = json.JSONDecoder(parse_constant=_no_constant)
        count, position = 0, 0
        while True:
            start = _skip_json_space(text, position)
            if start == len(text):
                return
            try:
                value, end = decoder.raw_decode(text, start)
            except (ValueError, RecursionError) as exc:
                if count > 1:
                    raise YAMLError(f"invalid JSON: {exc}", lines.at(start) + 1) from None
                break
            yield Piece(text[start:end], lines.at(start), True, value)
            count, position = count + 1, end
        # Not (or no longer) JSON: kubectl goes on in YAML after the blanks that end the line it stopped on.
        offset = position
        while offset < len(text) and text[offset].isspace():
            offset += 1
            if text[offset - 1] == "\n":
                break
    # kubectl's YAMLReader: a separator line ends a non-empty piece and is dropped; into an empty piece it is
    # taken (so a stream's leading ``---`` reaches go-yaml). Lines are re-joined with "\n", as its LineReader does.
    start = offset
    for found in _SEPARATOR.finditer(text, offset):
        rest = found.group(1).strip()
        if rest and not rest.startswith("#"):
            raise YAMLError(f"invalid document separator: --- {rest} (kubectl allows only a comment after ---)",
                            lines.at(found.start()) + 1)
        if found.start() > start:
            yield _piece(text, start, found.start(), lines.at(start))
            start = min(found.end() + 1, len(text))
    if start < len(text):
        yield _piece(text, start, len(text), lines.at(start))


class _Lines:
    """0-based line numbers of offsets asked in increasing order, counting each newline once."""

    def __init__(self, text: str) -> None:
        self.text, self.offset, self.line = text, 0, 0

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _piece(text: str, start: int, end: int, line: int) -> Piece:
    body = text[start:end].replace("\r\n", "\n")
    return Piece(body if body.endswith("\n") else body + "\n", line)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _skip_json_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


