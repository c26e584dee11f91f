"""Export: finished traces as JSON and JSON Lines, the offload worker, sinks, Perfetto.

Reads finished traces (`asgitrace.trace`); `asgitrace.exporters` is its public face.
"""

from __future__ import annotations

from ._json import (
    MalformedLine,
    StrPath,
    load_json,
    open_private,
    read_jsonl,
    to_dict,
    to_json,
    trace_of_data,
    write_jsonl,
)
from ._offload import Offload
from ._perfetto import to_perfetto, write_perfetto
from ._sink import JsonlSink

__all__ = [
    "JsonlSink",
    "MalformedLine",
    "Offload",
    "StrPath",
    "load_json",
    "open_private",
    "read_jsonl",
    "to_dict",
    "to_json",
    "to_perfetto",
    "trace_of_data",
    "write_jsonl",
    "write_perfetto",
]
