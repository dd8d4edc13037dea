"""Which steps' outputs a node's templates can read, so a claim loads only those.

Loading every output of the run on every claim made a run of N steps do O(N^2) work; a node
reads `steps.NAME` for a few constant names, which `kernel.templating.references` finds.
When a template reads `steps` in a way that is not a constant name (`steps[params.n]`, a loop
over `steps`, `steps | tojson`), or a text cannot be parsed, the answer is "every step", as
before. The worker still narrows what a step sees to its upstream steps.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from conveyor.kernel.templating import TemplateError, is_templated, references

# Plan keys that are structure, never user text.
_STRUCTURE = frozenset({"id", "type", "parents", "children", "body", "group", "queue"})
CACHE_SIZE = 4096
_CACHE: OrderedDict[tuple[str, str], frozenset[str] | None] = OrderedDict()
_LOCK = threading.Lock()


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


def _node_texts(node: Mapping[str, Any]) -> Iterator[str]:
    for key, value in node.items():
        if key not in _STRUCTURE:
            yield from _texts(value)


def referenced_steps(nodes: Iterable[Mapping[str, Any]]) -> frozenset[str] | None:
    """The step names these nodes' texts read under `steps`; None when it may be any step."""
    found: set[str] = set()
    for node in nodes:
        for text in _node_texts(node):
            refs = []
            if is_templated(text):
                try:
                    refs = references(text)
                except TemplateError:
                    return None
            # Conditions and other bare expressions are text without braces; a text that is
            # not an expression is no reference.
            with contextlib.suppress(TemplateError):
                refs += references(text, expression=True)
            for ref in refs:
                if ref.root == "steps":
                    if ref.name is None:
                        return None
                    found.add(ref.name)
    return frozenset(found)


def cached_referenced_steps(
    run_id: str, node_id: str, nodes: Iterable[Mapping[str, Any]]
) -> frozenset[str] | None:
    """`referenced_steps`, remembered per run and node (a run's plan never changes)."""
    key = (run_id, node_id)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = referenced_steps(nodes)
    with _LOCK:
        _CACHE[key] = value
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value
