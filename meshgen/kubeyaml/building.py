"""Plain JSON values from one document, iteratively (no depth can overflow a stack), with go-yaml's decoding rules:
aliases re-read their anchor, merge keys apply in order, keys become JSON strings, aliasing and depth are limited."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from yaml import events as ev

from meshgen.kubeyaml import scalars
from meshgen.kubeyaml.parsing import MAX_DEPTH, Piece, YAMLError, events

_NO_KEY = object()  # a mapping's next node is its key
_SCALAR, _ALIAS = ev.ScalarEvent, ev.AliasEvent
_MAP_START, _SEQ_START = ev.MappingStartEvent, ev.SequenceStartEvent
_MAP_END, _SEQ_END = ev.MappingEndEvent, ev.SequenceEndEvent
_HINTS = scalars.HINTS
_INT64 = 1 << 63
_TOO_DEEP = f"nesting is deeper than {MAX_DEPTH} levels (kubectl's limit)"
# Characters YAML streams may not hold: a JSON text with one is refused by go-yaml, so it takes the YAML path.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Budget:
    """Alias expansion left for a stream (meshgen's memory guard on top of go-yaml's per-document ratio)."""

    values: int


class _Anchor:
    __slots__ = ("cost", "kind", "open", "value")

    def __init__(self, value: Any, cost: int, kind: str, open_: bool) -> None:
        self.value, self.cost, self.kind, self.open = value, cost, kind, open_


class _Frame:
    __slots__ = ("anchored", "container", "flow", "is_list", "key", "key_line", "merge", "start", "types")

    def __init__(self, container: Any, flow: bool, anchored: _Anchor | None, start: int) -> None:
        self.container, self.is_list, self.flow = container, type(container) is list, flow
        self.anchored, self.start = anchored, start
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.merge = False
        self.types: dict[str, str] | None = None  # keys whose Go type is not string


def build(piece: Piece, budget: Budget) -> Any:
    """The value kubectl reads from one piece (None for an empty or null document)."""
    if piece.json:
        return piece.value
    fast = _as_json(piece.text)
    if fast is not _NO_KEY:
        return fast
    return _Builder(piece, budget).run(events(piece))


def _as_json(text: str) -> Any:
    """A piece that is one JSON object reads the same through JSON as through go-yaml, unless it holds escapes
    (go-yaml lacks ``\\/`` and surrogate pairs), characters YAML forbids, or numbers JSON and YAML 1.1 read
    differently; those take the YAML path. JSON is several times faster to read."""
    if text.lstrip()[:1] != "{" or "\\" in text or _NOT_PRINTABLE.search(text):
        return _NO_KEY
    try:
        return json.loads(text, parse_float=_json_float, parse_int=_json_int, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return _NO_KEY


def _json_float(text: str) -> Any:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError("out of range")  # go-yaml keeps such a scalar as text: the YAML path says so
    return scalars.value(number)


def _json_int(text: str) -> Any:
    return scalars.value(int(text))


def _refuse(name: str) -> Any:
    raise ValueError(name)


class _Builder:
    def __init__(self, piece: Piece, budget: Budget) -> None:
        self.piece, self.budget = piece, budget
        self.anchors: dict[str, _Anchor] = {}
        self.decoded = 1  # go-yaml's decodeCount (the document node first) and aliasCount
        self.aliased = 0
        self.result: Any = None

    def fail(self, message: str, mark: Any) -> YAMLError:
        return YAMLError(message, self.piece.line + mark.line + 1)

    def run(self, parsed: list[Any]) -> Any:
        stack: list[_Frame] = []
        for event in parsed:
            kind = type(event)
            if kind is _SCALAR:
                self.decoded += 1
                text, style, tag = event.value, event.style, event.tag
                if tag is None and (style or (text and text[0] not in _HINTS)):
                    item: Any = scalars.MERGE_KEY if text == "<<" and not style else text
                else:
                    try:
                        item = scalars.resolve(tag, text, not style)
                    except YAMLError as exc:
                        raise self.fail(exc.message, event.start_mark) from None
                if style in ("|", ">") and "\t" in text:
                    self.check_block_indentation(event)
                if "?" in text and not style and stack and stack[-1].flow:
                    raise self.fail("invalid YAML: a '?' inside an unquoted value in a flow collection ([...] or "
                                    "{...}) ends it for kubectl (go-yaml): quote the value", event.start_mark)
                if event.anchor is not None:
                    self.anchors[event.anchor] = _Anchor(item, 1, "scalar", False)
                self.place(stack, item, event.start_mark, True)
            elif kind is _MAP_START or kind is _SEQ_START:
                if not (kind is _SEQ_START and stack and stack[-1].merge):  # go-yaml: a merge list is no node
                    self.decoded += 1
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(_TOO_DEEP, event.start_mark)
                anchored = None
                if event.anchor is not None:
                    anchored = self.anchors[event.anchor] = _Anchor(None, 0, "map" if kind is _MAP_START else "seq",
                                                                    True)
                stack.append(_Frame({} if kind is _MAP_START else [], bool(event.flow_style), anchored,
                                    self.decoded))
            elif kind is _MAP_END or kind is _SEQ_END:
                frame = stack.pop()
                if frame.anchored is not None:
                    frame.anchored.value = frame.container
                    frame.anchored.cost = self.decoded - frame.start + 1
                    frame.anchored.open = False
                self.place(stack, frame.container, event.start_mark, False)
            elif kind is _ALIAS:
                self.alias(stack, event)
        return self.result

    def check_block_indentation(self, event: Any) -> None:
        """go-yaml refuses a tab right after the spaces that set a block scalar's indentation (libyaml takes it
        as content): ``script: |`` then a first line of spaces and a tab."""
        raw = self.piece.text[event.start_mark.index:event.end_mark.index]
        header, _, body = raw.partition("\n")
        if any(c.isdigit() for c in header.split("#")[0]):
            return  # an explicit indentation: not the case go-yaml refuses here
        for line in body.split("\n"):
            rest = line.lstrip(" ")
            if rest.startswith("\t"):
                raise self.fail("invalid YAML: found a tab character where an indentation space is expected (in a "
                                "block scalar's first line)", event.start_mark)
            if rest:
                return

    def alias(self, stack: list[_Frame], event: Any) -> None:
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            raise self.fail(f"unknown anchor '{event.anchor}' referenced", event.start_mark)
        if anchor.open:
            raise self.fail(f"anchor '{event.anchor}' value contains itself", event.start_mark)
        self.decoded += 1 + anchor.cost
        self.aliased += anchor.cost
        # go-yaml checks after every decode; within one expansion the share only grows, so its end is the peak.
        if self.aliased > 100 and self.decoded > 1000 and self.aliased / self.decoded > _allowed_ratio(self.decoded):
            raise self.fail("document contains excessive aliasing (kubectl refuses it too)", event.start_mark)
        self.budget.values -= anchor.cost
        if self.budget.values < 0:
            raise self.fail("YAML aliases expand this file beyond meshgen's limit of values", event.start_mark)
        copied, depth = _copy(anchor.value)
        if len(stack) + depth > MAX_DEPTH:
            raise self.fail(_TOO_DEEP, event.start_mark)
        self.place(stack, copied, event.start_mark, anchor.kind == "scalar")

    def place(self, stack: list[_Frame], item: Any, mark: Any, scalar: bool) -> None:
        """Put a finished node into its parent: a list item, a mapping key or value, or the document."""
        if scalar and (type(item) is float or item is scalars.MERGE_KEY or (
                type(item) is int and not -_INT64 <= item < _INT64)) and not (
                stack and not stack[-1].is_list and stack[-1].key is _NO_KEY):  # keys convert on their own
            try:
                item = "<<" if item is scalars.MERGE_KEY else scalars.value(item)
            except YAMLError as exc:
                raise self.fail(exc.message, mark) from None
        if not stack:
            self.result = item
            return
        parent = stack[-1]
        if parent.is_list:
            parent.container.append(item)
            return
        pending = parent.key
        if pending is _NO_KEY:
            if item is scalars.MERGE_KEY:
                parent.merge = True
                self.decoded -= 1  # go-yaml does not decode a merge key
            elif not scalar:
                raise self.fail(f"invalid map key: a {'mapping' if isinstance(item, dict) else 'list'}", mark)
            parent.key, parent.key_line = item, mark.line
            return
        parent.key = _NO_KEY
        if parent.merge:
            parent.merge = False
            self.merge(parent, item, mark)
        elif type(pending) is str and parent.types is None:
            parent.container[pending] = item
        else:
            self.put(parent, pending, item, mark)

    def put(self, parent: _Frame, resolved_key: Any, item: Any, mark: Any) -> None:
        try:
            text, go_type = scalars.key(resolved_key)
        except YAMLError as exc:
            raise self.fail(exc.message, mark) from None
        types = parent.types or {}
        if text in parent.container and types.get(text, "s") != go_type:
            raise self.fail(f"two keys read as {text!r} (for example 1 and \"1\"): kubectl keeps one of them at "
                            "random; write the key once", mark)
        if go_type != "s":
            types[text] = go_type
            parent.types = types
        parent.container[text] = item

    def merge(self, parent: _Frame, item: Any, mark: Any) -> None:
        """``<<: *base`` or ``<<: [*a, *b]``: the mappings' keys set in place, earlier ones winning in a list."""
        sources = [item] if isinstance(item, dict) else (list(reversed(item)) if isinstance(item, list) else None)
        if sources is None or not all(isinstance(s, dict) for s in sources):
            raise self.fail("map merge requires map or sequence of maps as the value", mark)
        for source in sources:
            for name, entry in source.items():
                self.put(parent, name, entry, mark)


def _allowed_ratio(decoded: int) -> float:
    """go-yaml's limit on the share of decode operations that come from alias expansion."""
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decoded - 400_000) / 3_600_000


def _copy(tree: Any) -> tuple[Any, int]:
    """A deep copy and its depth in collections, iteratively (an alias may stand for a deep tree)."""
    if not isinstance(tree, dict | list):
        return tree, 0
    root: Any = {} if isinstance(tree, dict) else []
    work = [(tree, root, 1)]
    deepest = 1
    while work:
        source, target, depth = work.pop()
        deepest = max(deepest, depth)
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for k, v in items:
            child: Any = v
            if isinstance(v, dict | list):
                child = {} if isinstance(v, dict) else []
                work.append((v, child, depth + 1))
            if isinstance(target, dict):
                target[k] = child
            else:
                target.append(child)
    return root, deepest


def positions(piece: Piece) -> Any:
    """Where each value of a piece's document is: ``(line, children)`` with 1-based stream lines, children a dict
    by key (as :func:`build` names keys) or a list, None for a scalar; None for an empty document. For error
    messages only, so merge keys and aliases are followed without go-yaml's checks."""
    stack: list[list[Any]] = []  # [children, pending key, its line, anchor]
    anchors: dict[str, Any] = {}
    root: Any = None
    for event in events(piece):
        kind = type(event)
        line = piece.line + event.start_mark.line + 1
        if kind is _MAP_START or kind is _SEQ_START:
            stack.append([{} if kind is _MAP_START else [], _NO_KEY, line, event.anchor])
            continue
        if kind is _SCALAR:
            node: Any = (line, None)
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is _NO_KEY:
                try:
                    resolved = scalars.resolve(event.tag, event.value, not event.style)
                    name = "<<" if resolved is scalars.MERGE_KEY else scalars.key(resolved)[0]
                except YAMLError:
                    name = event.value
                stack[-1][1:3] = [name, line]
                continue
            if event.anchor is not None:
                anchors[event.anchor] = node
        elif kind is _MAP_END or kind is _SEQ_END:
            children, _, start, anchor = stack.pop()
            node = (start, children)
            if anchor is not None:
                anchors[anchor] = node
        elif kind is _ALIAS:
            node = (line, anchors.get(event.anchor, (line, None))[1])
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is _NO_KEY:
                stack[-1][1:3] = [event.anchor, line]
                continue
        else:
            continue
        if not stack:
            root = node
            continue
        children, pending, key_line, _ = stack[-1]
        if isinstance(children, list):
            children.append(node)
        elif pending == "<<" and isinstance(node[1], dict):
            children.update(node[1])
        else:
            children[pending] = (key_line, node[1])
        stack[-1][1] = _NO_KEY
    return root
