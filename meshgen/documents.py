"""Reading and writing YAML/JSON documents: the only place meshgen touches the YAML library.

Loading is two-speed on purpose. The fast path parses with the C loader and records no positions, because a
large input (thousands of sandboxes) must load in well under a second. When something is wrong, :func:`locate`
re-reads just that file with the round-trip loader and finds the line of a field path, so errors still say
``file:line``. Input limits (file size, document count, alias expansion, string length) are enforced here, before
any validation sees the data.

Output is deterministic: mapping keys sorted at every level, multi-line strings as literal blocks, no anchors
(written by :mod:`meshgen.yamltext`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meshgen import yamltext
from meshgen.errors import InvalidInput, Location, Problem

JsonObject = dict[str, Any]
T = TypeVar("T")

MAX_FILE_BYTES = 1 << 20
MAX_DOCUMENTS_PER_FILE = 5_000
MAX_NODES_PER_DOCUMENT = 100_000
MAX_STRING_BYTES = 256 << 10
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


@dataclass(frozen=True)
class Document:
    """One parsed YAML/JSON document and where it came from."""

    location: Location
    body: JsonObject


@dataclass(frozen=True)
class Limits:
    """Input limits; the defaults protect a CI job from a hostile or broken input."""

    file_bytes: int = MAX_FILE_BYTES
    documents: int = MAX_DOCUMENTS_PER_FILE
    nodes: int = MAX_NODES_PER_DOCUMENT
    string_bytes: int = MAX_STRING_BYTES


DEFAULT_LIMITS = Limits()


def expand_paths(paths: Iterable[str], what: str = "input") -> list[str]:
    """Expand files and directories (recursively, ``*.yaml|*.yml|*.json``) into a sorted, de-duplicated list.

    ``-`` stands for standard input and is kept in place.
    """
    out: list[str] = []
    for raw in paths:
        if raw == STDIN:
            out.append(raw)
            continue
        if not raw.strip():  # Path("") is the current directory: never read it by accident
            raise InvalidInput.one(Location(repr(raw)), f"an empty {what} path", "pass a file, a directory or '-'")
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
            out.extend(found)
        elif path.is_file():
            out.append(raw)
        else:
            raise InvalidInput.one(
                Location(raw), f"{what} file or directory does not exist", "check the path passed to -f"
            )
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def read_text(source: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Read a file (or stdin for ``-``) as UTF-8, refusing anything over ``limits.file_bytes``."""
    try:
        if source == STDIN:
            data = sys.stdin.buffer.read(limits.file_bytes + 1)
        else:
            with open(source, "rb") as fh:
                data = fh.read(limits.file_bytes + 1)
    except OSError as exc:
        raise InvalidInput.one(Location(source), f"cannot read: {exc.strerror}") from exc
    if len(data) > limits.file_bytes:
        raise InvalidInput.one(
            Location(source),
            f"file is larger than {limits.file_bytes // 1024} KiB",
            "split it into several files (meshgen accepts directories and repeated -f)",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput.one(Location(source), f"not UTF-8 text (byte {exc.start})") from exc


def parse_documents(text: str, source: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Parse multi-document YAML (JSON is YAML) into plain, alias-free documents.

    Empty documents (``---`` with nothing after it) are skipped. Every non-empty document must be a mapping.
    """
    loader = _loader()
    docs: list[Document] = []
    with _yaml_errors(source):
        for index, node in enumerate(loader.compose_all(text)):
            if index >= limits.documents:
                raise InvalidInput.one(
                    Location(source, index),
                    f"more than {limits.documents} documents in one file",
                    "split the input into several files",
                )
            location = Location(source, index)
            raw = _Plain(loader.constructor, location, limits, text).value(node)
            if raw is None:
                continue
            if not isinstance(raw, dict):
                raise InvalidInput.one(
                    locate(location, text),
                    f"a document must be a mapping (a Kubernetes-style object), got {_type_name(raw)}",
                )
            docs.append(Document(location, raw))
    return docs


def parse_list(text: str, source: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Parse a file holding one YAML list of mappings (such as a golden case's ``traffic.yaml``): one document
    per item, located at ``[index]`` so errors still name the item's line. An empty file is an empty list."""
    loader = _loader()
    location = Location(source)
    with _yaml_errors(source):
        node = loader.compose(text)
        items = None if node is None else _Plain(loader.constructor, location, limits, text).value(node)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidInput.one(locate(location, text), f"expected a list, got {_type_name(items)}")
    docs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput.one(locate(location.at(index), text), f"expected a mapping, got {_type_name(item)}")
        docs.append(Document(location.at(index), item))
    return docs


@contextlib.contextmanager
def _yaml_errors(source: str) -> Iterator[None]:
    """YAML library errors as :class:`InvalidInput` naming the file and, when known, the line."""
    try:
        yield
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise InvalidInput.one(Location(source, line=line), f"invalid YAML: {reason}") from exc
    except YAMLError as exc:
        raise InvalidInput.one(Location(source), f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInput.one(Location(source), "invalid YAML: nesting is too deep") from exc
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # The library's constructors trip over some malformed tagged scalars (``!!int`` with no value) instead
        # of raising a YAML error.
        raise InvalidInput.one(Location(source), f"invalid YAML: a value cannot be read ({exc})") from exc


def read_documents(sources: Sequence[str], limits: Limits = DEFAULT_LIMITS) -> tuple[list[Document], dict[str, str]]:
    """Read and parse every source. Returns the documents and the texts read (kept so errors can be located,
    even for stdin, without reading again)."""
    documents: list[Document] = []
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for source in sources:
        try:
            text = read_text(source, limits)
            texts[source] = text
            documents.extend(parse_documents(text, source, limits))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return documents, texts


def _type_name(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = (_TAG + t for t in ("str", "map", "seq"))


class _Constructor(SafeConstructor):
    """The library's safe constructor, except that a timestamp is the text written: Kubernetes fields are never
    YAML timestamps (a label value ``2026-11-26`` is a string to the API server too)."""


_Constructor.add_constructor(_TAG + "timestamp", SafeConstructor.construct_yaml_str)


def _loader() -> YAML:
    """The C-accelerated safe loader, with timestamps kept as written."""
    loader = YAML(typ="safe", pure=False)
    loader.Constructor = _Constructor
    return loader


class _Plain:
    """A composed YAML node tree as plain JSON types, counting values so that alias expansion ("billion
    laughs") and self-referencing aliases fail fast with a clear message instead of eating memory.

    Converting the C parser's nodes directly is about twice as fast as letting the YAML library construct
    objects first. Only what is not a string, list or string-keyed mapping -- ints, floats, booleans, nulls,
    binary, merge keys (``<<``), duplicate or non-string keys, explicit tags -- goes through the library's
    constructor, so it keeps the library's semantics and its errors (with their lines)."""

    def __init__(self, constructor: Any, location: Location, limits: Limits, text: str) -> None:
        self.constructor = constructor
        self.location = location
        self.limits = limits
        self.text = text
        self.budget = limits.nodes

    def value(self, node: Node, path: tuple[str | int, ...] = ()) -> Any:
        """The plain value of ``node`` (at ``path`` in the document, for errors)."""
        tag = node.ctag.trval if node.ctag is not None else None
        if isinstance(node, ScalarNode) and tag == _STR:
            self._spend()
            return self._string(node.value, path)
        if isinstance(node, SequenceNode) and tag == _SEQ:
            self._spend()
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode) and tag == _MAP and self._regular(node):
            self._spend()
            return {key.value: self.value(item, (*path, key.value)) for key, item in node.value}
        return self._constructed(self.constructor.construct_object(node, deep=True), path)

    def _spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise InvalidInput.one(
                self.location,
                f"document expands to more than {self.limits.nodes} values (YAML aliases or a very large object)",
                "remove YAML anchors/aliases (&x / *x) or split the document",
            )

    def _regular(self, node: MappingNode) -> bool:
        """String keys only, none twice (merge keys, other keys and duplicates are the library's to construct,
        and to refuse: ``1`` and ``true`` are the same key to it)."""
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.ctag.trval != _STR or key_node.value in seen:
                return False
            seen.add(key_node.value)
        return True

    def _string(self, value: str, path: tuple[str | int, ...]) -> str:
        if len(value) > self.limits.string_bytes:
            raise InvalidInput.one(
                locate(self.location.at(*path), self.text),
                f"string is longer than {self.limits.string_bytes // 1024} KiB",
            )
        return value

    def _constructed(self, node: Any, path: tuple[str | int, ...]) -> Any:
        """A value the library constructed, as plain JSON types."""
        self._spend()
        if isinstance(node, dict):
            out: dict[Any, Any] = {}
            for raw_key, value in node.items():
                key = raw_key if isinstance(raw_key, str) else _scalar_key(raw_key)
                out[key] = self._constructed(value, (*path, key))
            return out
        if isinstance(node, list):
            return [self._constructed(item, (*path, i)) for i, item in enumerate(node)]
        if isinstance(node, str):
            return self._string(node, path)
        if isinstance(node, bytes):
            return node.decode("utf-8", "replace")
        return node


def _scalar_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def locate(location: Location, text: str | None = None) -> Location:
    """Fill in the line number of ``location`` by re-reading its source with positions.

    Walks the field path as far as it exists; a missing leaf is reported at its parent. Never raises: a
    location that cannot be resolved is returned unchanged.
    """
    texts = {location.source: text} if text is not None else {}
    return locate_many([location], texts)[0]


def locate_all(exc: InvalidInput, texts: Mapping[str, str]) -> InvalidInput:
    """The same problems with line numbers filled in from the sources' texts."""
    located = iter(locate_many([p.location for p in exc.problems if p.location], texts))
    return InvalidInput(
        Problem(next(located) if p.location else None, p.message, p.fix) for p in exc.problems
    )


def locate_many(locations: Sequence[Location], texts: Mapping[str, str]) -> list[Location]:
    """:func:`locate` for many locations, parsing each source once. ``texts`` holds sources already read
    (stdin among them); other sources are read from disk."""
    trees: dict[str, list[Any] | None] = {}
    out = []
    for location in locations:
        if location.line is not None:
            out.append(location)
            continue
        if location.source not in trees:
            trees[location.source] = _position_trees(location.source, texts.get(location.source))
        docs = trees[location.source]
        if docs is None or location.document >= len(docs):
            out.append(location)
            continue
        line = _line_of(docs[location.document], location.path)
        out.append(Location(location.source, location.document, location.path, line))
    return out


def _position_trees(source: str, text: str | None) -> list[Any] | None:
    try:
        if text is None:
            if source == STDIN:
                return None
            text = Path(source).read_text(encoding="utf-8")
        return list(YAML(typ="rt").load_all(text))
    except (OSError, YAMLError, ValueError, RecursionError):
        return None


def _line_of(node: Any, path: tuple[str | int, ...]) -> int | None:
    line: int | None = getattr(getattr(node, "lc", None), "line", None)
    for part in path:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                pos = lc.item(part) if lc is not None else None
                node = node[part]
            elif isinstance(node, dict) and part in node:
                pos = lc.key(part) if lc is not None else None
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
        if pos is not None:
            line = pos[0]
    return None if line is None else line + 1


# --- output ------------------------------------------------------------------------------------------------


def dump_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, ``---`` before each document, keys sorted, byte-identical for identical input,
    readable as the same data by YAML 1.1 (kubectl, Envoy) and YAML 1.2 readers."""
    return yamltext.dump_all(objects, sort_keys=True)


def dump_json(objects: Sequence[Mapping[str, Any]]) -> str:
    """A Kubernetes ``List`` (what ``kubectl get -o json`` prints for several objects)."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2, sort_keys=True) + "\n"


def clone(value: T) -> T:
    """A deep copy of a JSON-like tree (dicts, lists, scalars); several times faster than ``copy.deepcopy``."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value
