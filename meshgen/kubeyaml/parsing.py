"""libyaml's parser events for one document, with go-yaml v2's differences applied (see the package doc)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml import events as ev

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: the patched pure parser reads everything, slower
    _CParser = None  # type: ignore[assignment, misc]

MAX_DEPTH = 10_000  # Go's encoding/json nesting limit, hit by kubectl after go-yaml's own (10,000 per kind)


class YAMLError(Exception):
    """A document kubectl would refuse too. ``line`` is 1-based in the whole stream, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class Piece:
    """One document as kubectl splits a stream: its text and the stream line (0-based) it starts on. ``value`` is
    set for a piece kubectl read as JSON."""

    text: str
    line: int
    json: bool = False
    value: Any = None


def events(piece: Piece) -> list[Any]:
    """The parser events of a piece's first document: libyaml's, or go-yaml-patched pure Python's where libyaml
    refuses what go-yaml reads, or where the text holds a ``\\/`` escape (libyaml reads it, go-yaml refuses it).
    Errors are :class:`YAMLError` with stream lines."""
    text = piece.text
    if text.count("[") + text.count("{") > MAX_DEPTH and _flow_depth(text) > MAX_DEPTH:
        raise YAMLError(f"nesting is deeper than {MAX_DEPTH} levels (kubectl's limit)", piece.line + 1)
    try:
        return _events(text)
    except YAMLError as exc:
        raise YAMLError(exc.message, piece.line + (exc.line or 0) + 1) from None
    except yaml.YAMLError as exc:
        raise _error(exc, piece) from None


def _events(text: str) -> list[Any]:
    if _CParser is None or "\\/" in text:
        return _first_document(_GoParser(text))
    try:
        return _first_document(_CParser(text))
    except yaml.YAMLError as exc:
        try:
            return _first_document(_GoParser(text))
        except yaml.YAMLError:
            raise exc from None


_FLOW_TOKENS = re.compile(r"""[\[\]{}]|(?:^|(?<=[\s\[{,:]))(?:'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|\#[^\n]*)""",
                          re.MULTILINE)


def _flow_depth(text: str) -> int:
    """The deepest flow nesting of a text, outside quoted scalars and comments. libyaml takes time quadratic in
    flow depth (10,000 levels: ~20 s), so a piece past kubectl's limit is refused before it is parsed."""
    depth = deepest = 0
    for found in _FLOW_TOKENS.finditer(text):
        token = found.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _first_document(parser: Any) -> list[Any]:
    """Events up to the end of the first document; what follows is never parsed (go-yaml's Unmarshal)."""
    get = parser.get_event
    parsed: list[Any] = []
    append = parsed.append
    depth = 0
    try:
        while True:
            event = get()
            append(event)
            kind = type(event)
            if kind is _MAPPING_START or kind is _SEQUENCE_START:
                depth += 1
                if depth > MAX_DEPTH:  # stop here: libyaml slows down quadratically with depth
                    raise YAMLError(f"nesting is deeper than {MAX_DEPTH} levels (kubectl's limit)",
                                    event.start_mark.line)
            elif kind is _MAPPING_END or kind is _SEQUENCE_END:
                depth -= 1
            elif kind is _DOCUMENT_END or kind is _STREAM_END:
                return parsed
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()


_DOCUMENT_END, _STREAM_END = ev.DocumentEndEvent, ev.StreamEndEvent
_MAPPING_START, _SEQUENCE_START = ev.MappingStartEvent, ev.SequenceStartEvent
_MAPPING_END, _SEQUENCE_END = ev.MappingEndEvent, ev.SequenceEndEvent


def _error(exc: yaml.YAMLError, piece: Piece) -> YAMLError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return YAMLError(f"invalid YAML: {reason}", None if mark is None else piece.line + mark.line + 1)
    return YAMLError(f"invalid YAML: {exc}", piece.line + 1)


class _GoParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's scanner with go-yaml v2's rules where they differ: a ``:`` not followed by a space stays inside a
    plain scalar, also in flow collections (``image: [app:1.2]``); tabs separate words and tokens; no ``\\/``."""

    ESCAPE_REPLACEMENTS = {k: v for k, v in yaml.scanner.Scanner.ESCAPE_REPLACEMENTS.items() if k != "/"}  # type: ignore[misc]
    _BLANKZ = "\0 \t\r\n\x85\u2028\u2029"

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        while True:
            while self.peek() == " " or (self.peek() == "\t" and (self.flow_level or not self.allow_simple_key)):
                self.forward()
            if self.peek() == "#":
                while self.peek() not in "\0\r\n\x85\u2028\u2029":
                    self.forward()
            if self._line_break():
                if not self.flow_level:
                    self.allow_simple_key = True
            else:
                return

    def scan_plain(self) -> Any:
        chunks: list[str] = []
        start_mark = end_mark = self.get_mark()
        indent = self.indent + 1
        spaces: list[str] = []
        while True:
            length = 0
            if self.peek() == "#":
                break
            while True:
                ch = self.peek(length)
                if ch in self._BLANKZ or (ch == ":" and self.peek(length + 1) in self._BLANKZ) or (
                        self.flow_level and ch in ",?[]{}"):
                    break
                length += 1
            if length == 0:
                break
            self.allow_simple_key = False
            chunks.extend(spaces)
            chunks.append(self.prefix(length))
            self.forward(length)
            end_mark = self.get_mark()
            spaces = self.scan_plain_spaces(indent, start_mark)
            if not spaces or self.peek() == "#" or (not self.flow_level and self.column < indent):
                break
        return yaml.tokens.ScalarToken("".join(chunks), True, start_mark, end_mark)

    def scan_plain_spaces(self, indent: int, start_mark: Any) -> Any:
        length = 0
        while self.peek(length) in " \t":
            length += 1
        whitespaces = self.prefix(length)
        self.forward(length)
        if self.peek() not in "\r\n\x85\u2028\u2029":
            return [whitespaces] if whitespaces else []
        line_break = self._line_break()
        self.allow_simple_key = True
        if self._document_marker():
            return None
        breaks = []
        while self.peek() in " \t\r\n\x85\u2028\u2029":
            if self.peek() in " \t":
                if self.peek() == "\t" and self.column < indent:
                    raise yaml.scanner.ScannerError("while scanning a plain scalar", start_mark,
                                                    "found a tab character that violates indentation",
                                                    self.get_mark())
                self.forward()
            else:
                breaks.append(self._line_break())
                if self._document_marker():
                    return None
        chunks = [line_break] if line_break != "\n" else ([] if breaks else [" "])
        return chunks + breaks

    def scan_block_scalar_indicators(self, start_mark: Any) -> Any:
        chomping, increment = None, None
        for _ in range(2):
            ch = self.peek()
            if ch in "+-" and chomping is None:
                chomping = ch == "+"
            elif ch in "123456789" and increment is None:
                increment = int(ch)
            else:
                break
            self.forward()
        return chomping, increment

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> Any:
        while self.peek() in " \t":
            self.forward()
        if self.peek() == "#":
            while self.peek() not in "\0\r\n\x85\u2028\u2029":
                self.forward()
        if self.peek() not in "\0\r\n\x85\u2028\u2029":
            raise yaml.scanner.ScannerError("while scanning a block scalar", start_mark,
                                            "did not find expected comment or line break", self.get_mark())
        return self._line_break()

    def _line_break(self) -> str:
        return str(self.scan_line_break())  # type: ignore[no-untyped-call]

    def _document_marker(self) -> bool:
        return self.prefix(3) in ("---", "...") and self.peek(3) in self._BLANKZ



