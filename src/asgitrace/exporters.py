"""Traces out of the process: JSON, JSON lines, HTML and Perfetto's trace-event format.

Everything here is a pure function of finished traces, except `JsonlSink`, an
``on_trace`` callback that appends each finished trace to a JSON-lines file from a
background thread. Only the standard library is used.

The JSON layout is `asgitrace.Trace.to_dict`'s, described field by field in the docs
("The trace schema"); it carries ``schema_version`` so that readers can refuse what they
do not understand.

This module is the public face of `asgitrace.export` (and of the HTML page of
`asgitrace.views`): import from here.
"""

from __future__ import annotations

from .export import (
    JsonlSink,
    MalformedLine,
    StrPath,
    load_json,
    read_jsonl,
    to_dict,
    to_json,
    to_perfetto,
    write_jsonl,
    write_perfetto,
)
from .views import to_html, write_html

__all__ = [
    "JsonlSink",
    "MalformedLine",
    "StrPath",
    "load_json",
    "read_jsonl",
    "to_dict",
    "to_html",
    "to_json",
    "to_perfetto",
    "write_html",
    "write_jsonl",
    "write_perfetto",
]
