"""Summaries of the raw rounds (medians, ranges, paired ratios) and their rich tables.

Ratios are *paired*: each round's traced figure is divided by the untraced figure of the
same round (measured right next to it), and the report gives the median and the range of
those per-round ratios. Targets are printed next to them, never asserted.
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
"""Minimum throughput ratio (untraced time / traced time) per variant."""
P99_TARGET = {"traced": 1.10}
"""Maximum p99 latency ratio (traced / untraced) per variant, over HTTP."""
SUSPENSION_TARGET_NS = 500.0
"""Maximum nanoseconds that tracing adds to one suspension of the request task."""


def spread(values: Iterable[float]) -> Row:
    """Median, minimum and maximum of *values*."""
    data = list(values)
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def _paired(
    rows: Sequence[Row], variant: str, key: str, combine: Callable[[float, float], float]
) -> list[float]:
    """``combine(untraced, variant)`` of *key* for every round that measured both."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["variant"]] = row[key]
    return [
        combine(pair["untraced"], pair[variant])
        for pair in by_round.values()
        if "untraced" in pair and variant in pair
    ]


def _groups(rows: Sequence[Row], *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _verdict(value: float, target: float | None, at_least: bool) -> str | None:
    if target is None:
        return None
    return "met" if (value >= target if at_least else value <= target) else "missed"


def summarize_inprocess(rows: Sequence[Row]) -> list[Row]:
    """Per loop, endpoint and variant: µs/request and the paired throughput ratio."""
    out: list[Row] = []
    for (loop, endpoint), group in _groups(rows, "loop", "endpoint").items():
        for variant, vrows in _groups(group, "variant").items():
            summary: Row = {"loop": loop, "endpoint": endpoint, "variant": variant[0]}
            summary["us_per_request"] = spread(r["us_per_request"] for r in vrows)
            if variant[0] != "untraced":
                ratios = _paired(group, variant[0], "us_per_request", lambda u, t: u / t)
                deltas = _paired(group, variant[0], "us_per_request", lambda u, t: t - u)
                summary["throughput_ratio"] = spread(ratios)
                summary["added_us"] = spread(deltas)
                target = THROUGHPUT_TARGET.get(variant[0])
                summary["target"] = target
                summary["verdict"] = _verdict(spread(ratios)["median"], target, at_least=True)
            out.append(summary)
    return out


def summarize_http(rows: Sequence[Row]) -> list[Row]:
    """Per loop, endpoint and variant: req/s, p50, p99 and the paired ratios."""
    out: list[Row] = []
    for (loop, endpoint), group in _groups(rows, "loop", "endpoint").items():
        for variant, vrows in _groups(group, "variant").items():
            name = variant[0]
            summary: Row = {"loop": loop, "endpoint": endpoint, "variant": name}
            for key in ("rps", "p50_ms", "p99_ms"):
                summary[key] = spread(r[key] for r in vrows)
            summary["errors"] = sum(r["errors"] for r in vrows)
            if name != "untraced":
                rps = spread(_paired(group, name, "rps", lambda u, t: t / u))
                p99 = spread(_paired(group, name, "p99_ms", lambda u, t: t / u))
                summary["rps_ratio"], summary["p99_ratio"] = rps, p99
                summary["rps_target"] = THROUGHPUT_TARGET.get(name)
                summary["p99_target"] = P99_TARGET.get(name)
                summary["rps_verdict"] = _verdict(rps["median"], summary["rps_target"], True)
                summary["p99_verdict"] = _verdict(p99["median"], summary["p99_target"], False)
            out.append(summary)
    return out


def summarize_suspension(rows: Sequence[Row]) -> list[Row]:
    """Per loop: ns per suspension untraced and traced, and the paired ns added."""
    out: list[Row] = []
    for (loop,), group in _groups(rows, "loop").items():
        added = spread(_paired(group, "traced", "ns_per_suspension", lambda u, t: t - u))
        summary: Row = {"loop": loop, "suspensions": group[0]["suspensions"]}
        for variant, vrows in _groups(group, "variant").items():
            summary[f"{variant[0]}_ns"] = spread(r["ns_per_suspension"] for r in vrows)
        summary["added_ns"] = added
        summary["target_ns"] = SUSPENSION_TARGET_NS
        summary["verdict"] = _verdict(added["median"], SUSPENSION_TARGET_NS, at_least=False)
        out.append(summary)
    return out


# --- rendering ------------------------------------------------------------------------------


def _fmt(s: Row, digits: int = 1, unit: str = "", stacked: bool = False) -> str:
    """``median [min..max]`` (on two lines when *stacked*), escaped for rich."""
    median = f"{s['median']:.{digits}f}{unit}"
    span = f"[{s['min']:.{digits}f}..{s['max']:.{digits}f}]"
    return escape(f"{median}\n{span}" if stacked else f"{median} {span}")


def _target(op: str, target: float | None, verdict: str | None, unit: str = "x") -> str:
    if target is None:
        return ""
    value = f"{target:.2f}" if unit == "x" else f"{target:g}"
    return f"{op} {value}{unit}: {verdict}"


def inprocess_table(summaries: Sequence[Row], requests: int) -> Table:
    """The in-process table: µs per request and throughput ratios."""
    table = Table(
        title=f"In-process: ASGI app called directly, {requests} requests per round",
        caption=escape(
            "median [min..max] of the rounds; throughput ratio = untraced time / traced time, "
            "paired per round"
        ),
    )
    for header in ("loop", "endpoint", "variant", "µs/request", "added µs", "throughput", "target"):
        table.add_column(header, justify="left" if header in ("loop", "endpoint") else "right")
    for s in summaries:
        ratio = s.get("throughput_ratio")
        table.add_row(
            s["loop"],
            s["endpoint"],
            s["variant"],
            _fmt(s["us_per_request"]),
            _fmt(s["added_us"]) if "added_us" in s else "",
            _fmt(ratio, 3, "x") if ratio else "1x",
            _target("≥", s.get("target"), s.get("verdict")),
        )
    return table


def http_table(summaries: Sequence[Row], title: str) -> Table:
    """The HTTP table: requests/s, latencies and their ratios (median over range)."""
    table = Table(
        title=title,
        caption=escape(
            "median [min..max] of the rounds; ratios to untraced are paired per round: "
            "req/s ratio = traced req/s / untraced req/s, p99 ratio = traced p99 / untraced p99"
        ),
    )
    columns = ("loop", "endpoint", "variant", "req/s", "p50 ms", "p99 ms", "req/s ratio")
    for header in (*columns, "target", "p99 ratio", "target ", "errors"):
        justify = "left" if header in ("loop", "endpoint") else "right"
        table.add_column(header, justify=justify, overflow="fold")
    for s in summaries:
        traced = "rps_ratio" in s
        table.add_row(
            s["loop"],
            s["endpoint"],
            s["variant"],
            _fmt(s["rps"], 0, stacked=True),
            _fmt(s["p50_ms"], 2, stacked=True),
            _fmt(s["p99_ms"], 2, stacked=True),
            _fmt(s["rps_ratio"], 2, "x", stacked=True) if traced else "1x",
            _target("≥", s.get("rps_target"), s.get("rps_verdict")).replace(": ", "\n"),
            _fmt(s["p99_ratio"], 2, "x", stacked=True) if traced else "1x",
            _target("≤", s.get("p99_target"), s.get("p99_verdict")).replace(": ", "\n"),
            str(s["errors"]),
            end_section=True,
        )
    return table


def suspension_table(summaries: Sequence[Row]) -> Table:
    """The per-suspension table."""
    table = Table(
        title="Per suspension: await asyncio.sleep(0) x N inside one request",
        caption=escape(
            "median [min..max] of the rounds; added = (traced - untraced) / N, paired per round"
        ),
    )
    for header in ("loop", "N", "untraced ns", "traced ns", "added ns/suspension", "target"):
        table.add_column(header, justify="left" if header == "loop" else "right")
    for s in summaries:
        table.add_row(
            s["loop"],
            str(s["suspensions"]),
            _fmt(s["untraced_ns"], 0) if "untraced_ns" in s else "",
            _fmt(s["traced_ns"], 0) if "traced_ns" in s else "",
            _fmt(s["added_ns"], 0),
            _target("≤", s["target_ns"], s["verdict"], unit=" ns"),
        )
    return table


def console() -> Console:
    """A console wide enough for the tables, also when stdout is a CI log."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=max(out.width, 150))
    return out
