"""Summaries of the raw rounds (medians, ranges, paired ratios) and their rich tables.

Ratios are *paired*: each round's figure of a variant is divided by the untraced figure of
the same round (measured right next to it), and the report gives the median and the range of
those per-round ratios. The targets get a table of their own, met or missed by the median,
never asserted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

Row = dict[str, Any]

THROUGHPUT_TARGET = {"traced": 0.93, "sampled": 0.99}
"""Minimum throughput ratio (untraced time / variant time) per variant."""
P99_TARGET = {"traced": 1.10}
"""Maximum p99 latency ratio (variant / untraced) per variant, over HTTP."""
OTEL_TARGET = 3.0
"""Minimum throughput of full tracing over OpenTelemetry's (traced req/s / otel req/s)."""
SUSPENSION_TARGET_NS = 500.0
"""Maximum nanoseconds that tracing adds to one suspension of the request task."""
ENDPOINT_TARGETS: dict[str, dict[str, float]] = {"real": {"in-process": 0.92, "http": 0.95}}
"""Full tracing's throughput target on an endpoint, by part, where it differs from
``THROUGHPUT_TARGET["traced"]``: the ``real`` endpoint does ~20 socket round trips per
request, and tracing them must cost less than it does on a bare hello-world."""
CPU_TARGET = {"real": 1.05}
"""Maximum CPU time per request of full tracing over untraced (HTTP), by endpoint."""

TARGETS: dict[str, str] = {
    "full": f"full ≥ {THROUGHPUT_TARGET['traced']:.2f}x",
    "full_p99": f"full p99 ≤ {P99_TARGET['traced']:.2f}x",
    "full_cpu": f"full CPU/req ≤ {CPU_TARGET['real']:.2f}x (real)",
    "sampled": f"1 % sampling ≥ {THROUGHPUT_TARGET['sampled']:.2f}x",
    "vs_otel": f"full ÷ otel ≥ {OTEL_TARGET:g}x",
    "suspension": f"≤ {SUSPENSION_TARGET_NS:g} ns/suspension",
}
"""The targets of the targets table, by key, as its column headers say them."""


def spread(values: Iterable[float | None]) -> Row | None:
    """Median, minimum and maximum of *values* (``None`` values left out; ``None`` if none)."""
    data = [v for v in values if v is not None]
    if not data:
        return None
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def _paired(
    rows: Sequence[Row],
    variant: str,
    key: str,
    combine: Callable[[float, float], float],
    base: str = "untraced",
) -> list[float]:
    """``combine(base, variant)`` of *key* for every round that measured both (not None)."""
    by_round: dict[int, dict[str, float | None]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["variant"]] = row.get(key)
    out = []
    for pair in by_round.values():
        first, second = pair.get(base), pair.get(variant)
        if first is not None and second is not None and first > 0 and second > 0:
            out.append(combine(first, second))
    return out


def _groups(rows: Sequence[Row], *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _verdict(value: Row | None, target: float, at_least: bool) -> str:
    """``met`` or ``missed`` by the median of *value*; ``n/a`` without one."""
    if value is None:
        return "n/a"
    median = value["median"]
    return "met" if (median >= target if at_least else median <= target) else "missed"


def _speed(u: float, t: float) -> float:
    """Throughput ratio from two costs (time or CPU per request): untraced / variant."""
    return u / t


def _slowdown(u: float, t: float) -> float:
    """Ratio of two costs or latencies: variant / untraced."""
    return t / u


def summarize_inprocess(rows: Sequence[Row]) -> list[Row]:
    """Per loop, endpoint and variant: µs/request and the paired throughput ratio."""
    out: list[Row] = []
    for (loop, endpoint), group in _groups(rows, "loop", "endpoint").items():
        for (variant,), vrows in _groups(group, "variant").items():
            summary: Row = {"loop": loop, "endpoint": endpoint, "variant": variant}
            summary["us_per_request"] = spread(r["us_per_request"] for r in vrows)
            if variant != "untraced":
                summary["throughput_ratio"] = spread(
                    _paired(group, variant, "us_per_request", _speed)
                )
                summary["added_us"] = spread(
                    _paired(group, variant, "us_per_request", lambda u, t: t - u)
                )
            out.append(summary)
    return out


def summarize_http(rows: Sequence[Row]) -> list[Row]:
    """Per loop, endpoint and variant: req/s, p50, p99, CPU/request and the paired ratios."""
    out: list[Row] = []
    for (loop, endpoint), group in _groups(rows, "loop", "endpoint").items():
        for (variant,), vrows in _groups(group, "variant").items():
            summary: Row = {"loop": loop, "endpoint": endpoint, "variant": variant}
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request"):
                summary[key] = spread(r.get(key) for r in vrows)
            summary["errors"] = sum(r["errors"] for r in vrows)
            if variant != "untraced":
                summary["rps_ratio"] = spread(_paired(group, variant, "rps", _slowdown))
                summary["p50_ratio"] = spread(_paired(group, variant, "p50_ms", _slowdown))
                summary["p99_ratio"] = spread(_paired(group, variant, "p99_ms", _slowdown))
                summary["cpu_ratio"] = spread(
                    _paired(group, variant, "cpu_us_per_request", _slowdown)
                )
            out.append(summary)
    return out


def summarize_suspension(rows: Sequence[Row]) -> list[Row]:
    """Per loop: ns per suspension untraced and traced, and the paired ns added."""
    out: list[Row] = []
    for (loop,), group in _groups(rows, "loop").items():
        summary: Row = {"loop": loop, "suspensions": group[0]["suspensions"]}
        for (variant,), vrows in _groups(group, "variant").items():
            summary[f"{variant}_ns"] = spread(r["ns_per_suspension"] for r in vrows)
        summary["added_ns"] = spread(
            _paired(group, "traced", "ns_per_suspension", lambda u, t: t - u)
        )
        out.append(summary)
    return out


def _cell(measured: Row | None, target: float, at_least: bool, **extra: Any) -> Row | None:
    if measured is None:
        return None
    return {
        "measured": measured,
        "target": target,
        "op": "≥" if at_least else "≤",
        "verdict": _verdict(measured, target, at_least),
        **extra,
    }


def summarize_targets(
    inprocess: Sequence[Row], http: Sequence[Row], suspension: Sequence[Row]
) -> list[Row]:
    """One row per part, loop and endpoint: every target measured there, with its verdict.

    Cells (keys of `TARGETS`) hold the measured spread of the paired per-round ratios, the
    target and ``met``/``missed`` by the median; over HTTP, the throughput cells also carry
    the same ratio computed from the server's CPU time per request (``cpu``).
    """
    out: list[Row] = []
    for part, rows, key in (("in-process", inprocess, "us_per_request"), ("http", http, "rps")):
        for (loop, endpoint), group in _groups(rows, "loop", "endpoint").items():
            cost = _speed if part == "in-process" else _slowdown
            cells: Row = {}
            for variant, name in (("traced", "full"), ("sampled", "sampled")):
                extra: Row = {}
                if part == "http":
                    extra["cpu"] = spread(_paired(group, variant, "cpu_us_per_request", _speed))
                measured = spread(_paired(group, variant, key, cost))
                target = THROUGHPUT_TARGET[variant]
                if variant == "traced" and part in ENDPOINT_TARGETS.get(endpoint, {}):
                    target = ENDPOINT_TARGETS[endpoint][part]
                    extra["note"] = f"(target ≥ {target:.2f}x)"
                cells[name] = _cell(measured, target, True, **extra)
            if part == "http":
                p99 = spread(_paired(group, "traced", "p99_ms", _slowdown))
                cells["full_p99"] = _cell(p99, P99_TARGET["traced"], False)
                if endpoint in CPU_TARGET:
                    cpu = spread(_paired(group, "traced", "cpu_us_per_request", _slowdown))
                    cells["full_cpu"] = _cell(cpu, CPU_TARGET[endpoint], False)
            # traced vs otel: otel is the base, traced the variant: throughput traced / otel.
            vs_otel = spread(_paired(group, "traced", key, cost, base="otel"))
            extra = {}
            if part == "http":
                extra["cpu"] = spread(
                    _paired(group, "traced", "cpu_us_per_request", _speed, base="otel")
                )
            cells["vs_otel"] = _cell(vs_otel, OTEL_TARGET, True, **extra)
            out.append({"part": part, "loop": loop, "endpoint": endpoint, "cells": cells})
    for s in suspension:
        cell = _cell(s["added_ns"], SUSPENSION_TARGET_NS, False)
        out.append(
            {"part": "suspension", "loop": s["loop"], "endpoint": "", "cells": {"suspension": cell}}
        )
    return out


# --- rendering ------------------------------------------------------------------------------


def _fmt(s: Row | None, digits: int = 1, unit: str = "", stacked: bool = False) -> str:
    """``median [min..max]`` (on two lines when *stacked*), escaped for rich; ``n/a``."""
    if s is None:
        return "n/a"
    median = f"{s['median']:.{digits}f}{unit}"
    span = f"[{s['min']:.{digits}f}..{s['max']:.{digits}f}]"
    return escape(f"{median}\n{span}" if stacked else f"{median} {span}")


def _sections(summaries: Sequence[Row]) -> list[bool]:
    """Whether each row ends a (loop, endpoint) group: a line under it."""
    keys = [(s["loop"], s["endpoint"]) for s in summaries]
    return [i + 1 == len(keys) or keys[i + 1] != key for i, key in enumerate(keys)]


def inprocess_table(summaries: Sequence[Row], requests: int) -> Table:
    """The in-process table: µs per request and throughput ratios."""
    table = Table(
        title=f"In-process: ASGI app called directly, {requests} requests per round",
        caption=escape(
            "median [min..max] of the rounds; throughput = untraced time / variant time and "
            "added = variant - untraced, both paired per round"
        ),
    )
    for header in ("loop", "endpoint", "variant", "µs/request", "added µs", "throughput"):
        table.add_column(header, justify="left" if header in ("loop", "endpoint") else "right")
    for s, last in zip(summaries, _sections(summaries), strict=True):
        ratio = s.get("throughput_ratio")
        table.add_row(
            s["loop"],
            s["endpoint"],
            s["variant"],
            _fmt(s["us_per_request"]),
            _fmt(s["added_us"]) if "added_us" in s else "",
            _fmt(ratio, 3, "x") if "throughput_ratio" in s else "1x",
            end_section=last,
        )
    return table


def http_tables(summaries: Sequence[Row], title: str) -> list[Table]:
    """The HTTP tables: the figures of every variant, then their ratios to untraced."""
    figures = Table(
        title=f"{title}: figures",
        caption=escape(
            "median [min..max] of the rounds; CPU = the server process's user + system time "
            "(all its threads) per request; errors = non-2xx answers and socket errors"
        ),
    )
    for header in ("loop", "endpoint", "variant", "req/s", "p50 ms", "p99 ms", "CPU µs/req"):
        figures.add_column(header, justify="left" if header in ("loop", "endpoint") else "right")
    figures.add_column("errors", justify="right")
    ratios = Table(
        title=f"{title}: ratios to untraced",
        caption=escape(
            "median [min..max] of the per-round ratios, paired per round: req/s ratio = "
            "variant / untraced (higher is better); p50, p99 and CPU ratios = variant / "
            "untraced (lower is better)"
        ),
    )
    for header in ("loop", "endpoint", "variant", "req/s", "p50", "p99", "CPU/request"):
        ratios.add_column(header, justify="left" if header in ("loop", "endpoint") else "right")
    for s, last in zip(summaries, _sections(summaries), strict=True):
        names = (s["loop"], s["endpoint"], s["variant"])
        figures.add_row(
            *names,
            _fmt(s["rps"], 0),
            _fmt(s["p50_ms"], 2),
            _fmt(s["p99_ms"], 2),
            _fmt(s["cpu_us_per_request"], 0),
            str(s["errors"]),
            end_section=last,
        )
        if s["variant"] != "untraced":
            keys = ("rps_ratio", "p50_ratio", "p99_ratio", "cpu_ratio")
            ratios.add_row(*names, *(_fmt(s[k], 2, "x") for k in keys), end_section=last)
    return [figures, ratios]


def suspension_table(summaries: Sequence[Row]) -> Table:
    """The per-suspension table."""
    table = Table(
        title="Per suspension: await asyncio.sleep(0) x N inside one request",
        caption=escape(
            "median [min..max] of the rounds; added = (traced - untraced) / N, paired per round"
        ),
    )
    for header in ("loop", "N", "untraced ns", "traced ns", "added ns/suspension"):
        table.add_column(header, justify="left" if header == "loop" else "right")
    for s in summaries:
        table.add_row(
            s["loop"],
            str(s["suspensions"]),
            _fmt(s.get("untraced_ns"), 0),
            _fmt(s.get("traced_ns"), 0),
            _fmt(s["added_ns"], 0),
        )
    return table


def _target_cell(cell: Row | None) -> str:
    if cell is None:
        return "-"
    digits, unit = (0, " ns") if cell["target"] == SUSPENSION_TARGET_NS else (2, "x")
    text = f"{_fmt(cell['measured'], digits, unit, stacked=True)}\n{cell['verdict']}"
    if "note" in cell:
        text += f" {escape(cell['note'])}"
    if "cpu" in cell:
        cpu = cell["cpu"]
        text += "\nCPU: n/a" if cpu is None else f"\nCPU: {cpu['median']:.2f}x"
    return text


def targets_table(rows: Sequence[Row]) -> Table:
    """The targets: one row per part, loop and endpoint, one column per target."""
    table = Table(
        title="Targets (printed, never asserted; met/missed by the median)",
        caption=escape(
            "median [min..max] of the per-round ratios; full = asgitrace tracing every "
            "request; throughput ratios in-process from µs/request, over HTTP from req/s, "
            "with (CPU:) the median of the same ratio from the server's CPU time per request "
            "(steadier on a busy machine); full ÷ otel = full's throughput / OpenTelemetry's; "
            "- = not measured"
        ),
    )
    for header in ("part", "loop", "endpoint"):
        table.add_column(header)
    for header in TARGETS.values():
        table.add_column(header, justify="right", overflow="fold")
    for row in rows:
        cells = row["cells"]
        table.add_row(
            row["part"],
            row["loop"],
            row["endpoint"],
            *(_target_cell(cells.get(key)) for key in TARGETS),
            end_section=True,
        )
    return table


def targets_tally(rows: Sequence[Row]) -> str:
    """``N of M targets met`` over every cell that was measured."""
    verdicts = [
        cell["verdict"] for row in rows for cell in row["cells"].values() if cell is not None
    ]
    if not verdicts:
        return "no target measured (they need the traced, sampled and otel variants)"
    met = verdicts.count("met")
    return f"targets met: {met} of {len(verdicts)} (by the median of the rounds)"


def console() -> Console:
    """A console wide enough for the tables, also when stdout is a CI log."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=max(out.width, 150))
    return out
