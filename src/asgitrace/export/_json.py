"""JSON and JSON Lines: a trace as `Trace.to_dict`'s layout, files of them, read back.

The JSON layout is `asgitrace.Trace.to_dict`'s, described field by field in the docs
("The trace schema"); it carries ``schema_version`` so that readers can refuse what they
do not understand. Only the standard library is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, TypeAlias, final

from .._support import LOGGER
from ..trace import Trace

__all__ = [
    "MalformedLine",
    "StrPath",
    "load_json",
    "open_private",
    "read_jsonl",
    "to_dict",
    "to_json",
    "trace_of_data",
    "write_jsonl",
]

StrPath: TypeAlias = "str | os.PathLike[str]"
"""A file name, as `open` takes it."""

_FILE_MODE: Final = 0o600  # traces name paths, routes and (redacted) headers: owner only


# -- JSON ---------------------------------------------------------------------------------


def to_dict(trace: Trace) -> dict[str, Any]:
    """Return *trace* as JSON-ready data: the same as `asgitrace.Trace.to_dict`.

    Args:
        trace: A finished trace.

    Returns:
        Plain dicts, lists, strings, numbers, booleans and ``None``, with
        ``schema_version`` first.

    .. versionadded:: 0.1
    """
    return trace.to_dict()


def to_json(trace: Trace, *, indent: int | None = None) -> str:
    """Return *trace* as a JSON text.

    Without *indent* the text is a single line (newlines inside strings are escaped), so
    it is also one line of a JSON-lines file. Non-ASCII characters are escaped, so the
    text is plain ASCII whatever the request carried.

    Args:
        trace: A finished trace.
        indent: Indent nested levels by this many spaces (pretty printing).

    .. versionadded:: 0.1
    """
    separators = (",", ":") if indent is None else None
    return json.dumps(trace.to_dict(), indent=indent, separators=separators)


def load_json(text: str | bytes) -> Trace:
    """Rebuild a trace from `to_json` (or `to_dict`) output.

    Args:
        text: One JSON document.

    Returns:
        The trace, equal field by field to the one exported.

    Raises:
        ValueError: *text* is not JSON, not a trace, or a trace of another
            ``schema_version``.

    .. versionadded:: 0.1
    """
    try:
        data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"not JSON: {exc}") from exc
    return trace_of_data(data)


def trace_of_data(data: Any) -> Trace:
    """The trace of parsed JSON (`to_dict`'s layout); `ValueError` when it is not one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"not a trace: a JSON {type(data).__name__}, expected an object")
    try:
        return Trace.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trace dictionary: {exc!r}") from exc


def open_private(path: StrPath, *, append: bool) -> IO[str]:
    """Open *path* for writing text; a file this creates is readable by its owner only."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, _FILE_MODE)
    try:
        return open(fd, "a" if append else "w", encoding="utf-8", newline="\n")
    except BaseException:  # pragma: no cover - fdopen of a fresh descriptor does not fail
        os.close(fd)
        raise


# -- JSON lines ---------------------------------------------------------------------------


def write_jsonl(traces: Iterable[Trace], path: StrPath, *, append: bool = False) -> int:
    """Write *traces* to a JSON-lines file, one trace per line.

    A file this creates is readable and writable by its owner only (mode ``0o600``).

    Args:
        traces: Finished traces, e.g. ``tracer.traces``.
        path: The file to write.
        append: Add to the end of an existing file instead of replacing it.

    Returns:
        How many traces were written.

    .. versionadded:: 0.1
    """
    count = 0
    with open_private(path, append=append) as file:
        for trace in traces:
            file.write(to_json(trace))
            file.write("\n")
            count += 1
    return count


@final
@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line of a JSON-lines file that `read_jsonl` could not read as a trace.

    Attributes:
        path: The file.
        line: The line number, counting from 1.
        error: What was wrong with it.

    .. versionadded:: 0.1
    """

    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


def read_jsonl(
    *paths: StrPath,
    strict: bool = False,
    on_error: Callable[[MalformedLine], object] | None = None,
) -> list[Trace]:
    """Read traces from one or several JSON-lines files, merged and sorted by start time.

    Several files (one per worker process, say) are merged into one list ordered by
    the wall-clock arrival time of each request. A trace that appears more than once
    (the same file given twice, or a file copied) is kept once: the first copy read.

    Blank lines are ignored. A malformed line (not JSON, not a trace, another
    ``schema_version``, a line cut short by a crash) is skipped and reported with its
    file and line number: to *on_error* when given, otherwise as a warning on the
    ``asgitrace`` logger. With ``strict=True`` it raises instead.

    Args:
        paths: The files to read, at least one.
        strict: Raise on the first malformed line instead of skipping it.
        on_error: Called with a `MalformedLine` for each line skipped.

    Returns:
        The traces, sorted by `asgitrace.Trace.start`, without duplicate ids.

    Raises:
        TypeError: no path was given.
        ValueError: with ``strict=True``, a malformed line (the message names the file
            and line).
        OSError: a file cannot be read.

    .. versionadded:: 0.1
    """
    if not paths:
        raise TypeError("read_jsonl() needs at least one path")
    seen: set[str] = set()
    traces: list[Trace] = []
    for path in paths:
        name = os.fspath(path)
        with open(path, "rb") as file:
            for number, raw in enumerate(file, 1):
                if not raw.strip():
                    continue
                try:
                    trace = load_json(raw.decode("utf-8"))
                except ValueError as exc:
                    problem = MalformedLine(name, number, str(exc))
                    if strict:
                        raise ValueError(str(problem)) from exc
                    if on_error is not None:
                        on_error(problem)
                    else:
                        LOGGER.warning("asgitrace: skipped a malformed trace line: %s", problem)
                    continue
                if trace.id not in seen:
                    seen.add(trace.id)
                    traces.append(trace)
    traces.sort(key=lambda t: (t.start, t.start_ns))
    return traces
