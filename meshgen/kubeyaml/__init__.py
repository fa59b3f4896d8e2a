"""YAML as kubectl reads it: the grammar and the values of sigs.k8s.io/yaml (go-yaml v2, YAML 1.1) after kubectl's
own splitting of a stream into documents. What this module returns is the JSON kubectl would send to the API server.

Read from the source of what kube-apiserver/kubectl 1.37 build with (sigs.k8s.io/yaml v1.6.0, go.yaml.in/yaml/v2
v2.4.4, k8s.io/apimachinery util/yaml) and checked against a real kube-apiserver (tests/kube/test_yaml_dialect.py):

- a stream is split on lines that start with ``---`` (anything but a comment after it is an error); a stream
  whose first character is ``{`` is read as JSON objects first. Each piece is one go-yaml document: whatever follows
  a ``...`` end marker in the same piece is never read.
- plain scalars resolve as YAML 1.1: ``yes/no/on/off/y/n`` (any case form go-yaml lists) are booleans, ``0755`` is
  octal, ``0x1F``, ``0b101``, ``1_000`` are ints, ``~``/``null``/empty are null; timestamps stay the text written.
  Floats pass through JSON, so ``1e3`` and ``1.0`` are the integers 1000 and 1; ``.inf``/``.nan`` values are refused.
- keys become strings (``1`` -> "1", ``y`` -> "true"); a null or collection key is refused; two keys that only
  become equal as strings (``1`` and ``"1"``) are refused, because kubectl then keeps one of them at random.
- a key given twice keeps its last value, and merge keys (``<<``) are applied in order, so an explicit key before
  the merge is overwritten by it (go-yaml's order, not the YAML 1.1 spec's).
- nesting deeper than 10,000 levels (kubectl's JSON decoder limit) and excessive alias expansion are refused.

Parsing is libyaml's (PyYAML's C parser, an iterative state machine, so no depth can overflow a C stack), with
go-yaml's differences applied: where libyaml refuses a document, PyYAML's pure-Python parser reads it with
go-yaml's rules for plain scalars and tabs; where libyaml accepts what go-yaml refuses (a ``\\/`` escape), it is
refused here. Documents are built from parser events iteratively, never recursively.
"""

from __future__ import annotations

from meshgen.kubeyaml.building import Budget, build, positions
from meshgen.kubeyaml.parsing import MAX_DEPTH, Piece, YAMLError
from meshgen.kubeyaml.stream import split

__all__ = ["MAX_DEPTH", "Budget", "Piece", "YAMLError", "build", "positions", "split"]
