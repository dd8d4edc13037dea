"""What an attempt rendered: the node's data with each rendered field as the runner saw it.

`Renderer` (``runners.base``) notes every field it renders into the recorder of the current
`recording()` scope; `rendered_inputs` turns those notes into the attempt's record: the node's
``data`` with the rendered fields replaced, secrets masked with the same `Masker` as the
logs, and size-bounded, as JSON text (``Execution.rendered_inputs_json``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

#: A rendered string longer than this is cut.
MAX_STRING = 8192
#: A record longer than this (JSON characters) is replaced by a preview of that length.
MAX_RECORD = 32 * 1024

_PATH = re.compile(r"^data\.([^.\[\]]+)(?:\[(\d+)\])?$")
_current: ContextVar[dict[str, Any] | None] = ContextVar("conveyor_rendered", default=None)


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Any]]:
    """Collect what renderers of this thread render meanwhile, by field path."""
    notes: dict[str, Any] = {}
    token = _current.set(notes)
    try:
        yield notes
    finally:
        _current.reset(token)


def note(path: str, value: Any) -> None:
    """Record that field `path` (``data.name`` or ``data.name[i]``) rendered to `value`."""
    notes = _current.get()
    if notes is not None:
        notes[path] = value


def rendered_inputs(data: Any, notes: Mapping[str, Any], mask: Any) -> str | None:
    """The record of one attempt (JSON text), or None when the node has no data.

    `mask` masks a nested value (``Masker.value``); it is applied before anything is cut, so
    a cut never leaves part of a secret in clear.
    """
    if not isinstance(data, Mapping) or not data:
        return None
    doc: dict[str, Any] = copy.deepcopy(dict(data))
    for path, value in notes.items():
        match = _PATH.match(path)
        if match is None:
            continue
        name, index = match.group(1), match.group(2)
        if index is None:
            doc[name] = value
        elif isinstance(doc.get(name), list) and int(index) < len(doc[name]):
            doc[name][int(index)] = value
    return bounded(mask(doc))


def bounded(doc: Any) -> str:
    """`doc` as JSON text within `MAX_RECORD` characters, long strings cut."""
    text = json.dumps(_cut(doc), ensure_ascii=False, default=str)
    if len(text) <= MAX_RECORD:
        return text
    return json.dumps({"truncated": True, "preview": text[:MAX_RECORD]}, ensure_ascii=False)


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"{value[:MAX_STRING]}… [{len(value) - MAX_STRING} more characters]"
    if isinstance(value, Mapping):
        return {str(k): _cut(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cut(v) for v in value]
    return value
