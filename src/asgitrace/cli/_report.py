"""Reading saved traces for ``asgitrace show``: JSON documents (a trace or a list) and
JSON lines, merged by arrival.

Part of the CLI layer (a leaf: nothing in the package imports it). Nothing here prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..export import read_jsonl, trace_of_data
from ._app import CliError

if TYPE_CHECKING:
    from ..export import MalformedLine
    from ..trace import Trace

__all__ = ["read_traces"]


def _one_document(path: str) -> list[Trace] | None:
    """The traces of a file holding one JSON document (a trace or a list), else ``None``."""
    with open(path, "rb") as file:
        text = file.read()
    try:
        data = json.loads(text)
    except ValueError:
        return None  # JSON lines (or not JSON at all): read_jsonl reports line by line
    items = data if isinstance(data, list) else [data]
    traces = []
    for index, item in enumerate(items):
        try:
            traces.append(trace_of_data(item))
        except ValueError as exc:
            where = f" (item {index})" if isinstance(data, list) else ""
            raise CliError(f"{path}{where} is not an asgitrace trace: {exc}") from exc
    return traces


def read_traces(
    paths: Sequence[str], *, on_error: Callable[[MalformedLine], object]
) -> list[Trace]:
    """Read traces saved as JSON (one trace, or a list) or JSON lines, merged by arrival.

    Raises:
        CliError: a file cannot be read, a JSON document is not a trace, or no file
            holds any trace.
    """
    found: list[Trace] = []
    lines: list[str] = []
    try:
        for path in paths:
            document = _one_document(path)
            if document is None:
                lines.append(path)
            else:
                found.extend(document)
        if lines:
            found.extend(read_jsonl(*lines, on_error=on_error))
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror or exc}") from exc
    seen: set[str] = set()
    traces = []
    for trace in sorted(found, key=lambda t: (t.start, t.start_ns)):
        if trace.id not in seen:
            seen.add(trace.id)
            traces.append(trace)
    if not traces:
        raise CliError(f"no traces found in {', '.join(paths)}")
    return traces
