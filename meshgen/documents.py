"""Reading and writing YAML/JSON documents: files and limits, locating errors, and deterministic output.

What a document means is :mod:`meshgen.kubeyaml`'s: the documents and values kubectl reads (sigs.k8s.io/yaml,
YAML 1.1), so meshgen accepts every manifest kubectl accepts and reads the same data from it. Errors say
``file:line``: parse errors know their line, and :func:`locate` finds the line of a field path by reading the same
document again with positions. Input limits (file size, document count, alias expansion) apply here, before any
validation sees the data.

Output is deterministic: mapping keys sorted at every level, multi-line strings as literal blocks, no anchors
(written by :mod:`meshgen.yamltext`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from meshgen import kubeyaml, yamltext
from meshgen.errors import InvalidInput, Location, Problem

JsonObject = dict[str, Any]
T = TypeVar("T")

MAX_FILE_BYTES = 1 << 20
MAX_DOCUMENTS_PER_FILE = 5_000
# Values YAML aliases may add to one file. kubectl limits aliasing per document only (it reads one at a time);
# meshgen holds a whole file, so a file of small alias bombs is refused here. No file without aliases reaches it.
MAX_ALIASED_VALUES_PER_FILE = 1_000_000
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
    aliased_values: int = MAX_ALIASED_VALUES_PER_FILE


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
    """Parse a stream of documents as kubectl does (YAML split on ``---`` lines, or JSON objects) into plain,
    alias-free documents. Empty and null documents are skipped; every other document must be a mapping."""
    docs: list[Document] = []
    for index, value in enumerate(_values(text, source, limits)):
        if value is None:
            continue
        location = Location(source, index)
        if not isinstance(value, dict):
            raise InvalidInput.one(
                locate(location, text),
                f"a document must be a mapping (a Kubernetes-style object), got {_type_name(value)}",
            )
        docs.append(Document(location, value))
    return docs


def parse_list(text: str, source: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Parse a file holding one YAML list of mappings (such as a golden case's ``traffic.yaml``): one document
    per item, located at ``[index]`` so errors still name the item's line. An empty file is an empty list."""
    location = Location(source)
    found = [v for v in _values(text, source, limits) if v is not None]
    if len(found) > 1:
        raise InvalidInput.one(location, "expected one YAML list, found several documents", "remove the ---")
    items = found[0] if found else []
    if not isinstance(items, list):
        raise InvalidInput.one(locate(location, text), f"expected a list, got {_type_name(items)}")
    docs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput.one(locate(location.at(index), text), f"expected a mapping, got {_type_name(item)}")
        docs.append(Document(location.at(index), item))
    return docs


def _values(text: str, source: str, limits: Limits) -> list[Any]:
    """The value of every document of ``text`` (None for an empty one), as kubectl reads them."""
    budget = kubeyaml.Budget(limits.aliased_values)
    values: list[Any] = []
    try:
        for piece in kubeyaml.split(text):
            if len(values) >= limits.documents:
                raise InvalidInput.one(Location(source, len(values), line=piece.line + 1),
                                       f"more than {limits.documents} documents in one file",
                                       "split the input into several files")
            values.append(kubeyaml.build(piece, budget))
    except kubeyaml.YAMLError as exc:
        raise InvalidInput.one(Location(source, line=exc.line), exc.message, _fix(exc)) from None
    return values


def _fix(exc: kubeyaml.YAMLError) -> str | None:
    if "aliases" in exc.message or "aliasing" in exc.message:
        return "remove YAML anchors/aliases (&x / *x) or split the document"
    return None


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
        return [kubeyaml.positions(piece) for piece in kubeyaml.split(text)]
    except (OSError, ValueError, kubeyaml.YAMLError):
        return None


def _line_of(tree: Any, path: tuple[str | int, ...]) -> int | None:
    """The line of the deepest part of ``path`` found in a position tree (see :func:`kubeyaml.positions`)."""
    if tree is None:
        return None
    line, node = tree
    for part in path:
        children = node
        try:
            found = (isinstance(part, int) and isinstance(children, list) and 0 <= part < len(children)) or (
                isinstance(children, dict) and part in children)
            if found:
                line, node = children[part]
            else:
                break
        except (TypeError, ValueError):
            break
    return int(line)


# --- output ------------------------------------------------------------------------------------------------


def dump_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, ``---`` before each document, keys sorted, byte-identical for identical input,
    readable as the same data by YAML 1.1 (kubectl, Envoy) and YAML 1.2 readers."""
    return yamltext.dump_all(objects, sort_keys=True)


def dump_json(objects: Sequence[Mapping[str, Any]]) -> str:
    """A Kubernetes ``List`` (what ``kubectl get -o json`` prints for several objects)."""
    return dump_json_start() + dump_json_items(objects, True) + dump_json_end(not objects)


# The same List written a page at a time (``meshgen get``): start, each page's items, end; byte-identical to
# dump_json of all the items (json.dumps with indent=2 and sorted keys).
def dump_json_start() -> str:
    return '{\n  "apiVersion": "v1",\n  "items": ['


def dump_json_items(objects: Sequence[Mapping[str, Any]], first: bool) -> str:
    """Items of a List; ``first``: none has been written before them."""
    texts = ["\n    " + json.dumps(o, indent=2, sort_keys=True).replace("\n", "\n    ") for o in objects]
    return ("" if first or not texts else ",") + ",".join(texts)


def dump_json_end(empty: bool) -> str:
    return ('' if empty else '\n  ') + '],\n  "kind": "List"\n}\n'


def clone(value: T) -> T:
    """A deep copy of a JSON-like tree (dicts, lists, scalars); several times faster than ``copy.deepcopy``."""
    return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value
