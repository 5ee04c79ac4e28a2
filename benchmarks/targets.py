"""Issue 20's targets, checked against one results file: each row names its figure, its
floor or peer, the ratio measured in the same run, the target and whether it is met.

Used by ``report.py`` (the first table of docs/benchmarks.md); can be run alone to check
a partial run: ``python benchmarks/targets.py``. A figure missing from the results is
reported as "not measured", never guessed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

Groups = dict[str, list[dict[str, Any]]]
#: (what was measured, against what, ratio) or None when the results do not have it
Found = tuple[str, str, float] | None
Finder = Callable[[Groups], Found]


def _rows(groups: Groups, key: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in groups.get(key, []) if all(r.get(k) == v for k, v in match.items())]


def _one(groups: Groups, key: str, client: str, **match: Any) -> dict[str, Any] | None:
    """The row of ``client`` (named ``build`` in the boot suite's rows)."""
    found = [r for r in _rows(groups, key, **match) if r.get("client", r.get("build")) == client]
    return found[0] if found else None


def _ratio(
    groups: Groups, key: str, field: str, ours: str, peer: str, unit: str, **match: Any
) -> Found:
    a, b = _one(groups, key, ours, **match), _one(groups, key, peer, **match)
    if not a or not b or not a.get(field) or not b.get(field):
        return None
    return f"{a[field]:g} {unit}", f"{peer}: {b[field]:g} {unit}", a[field] / b[field]


def _field(groups: Groups, key: str, client: str, field: str, unit: str, note: str) -> Found:
    row = _one(groups, key, client)
    if not row or row.get(field) is None:
        return None
    return f"{row[field]:g} {unit}", note, float(row[field])


def _rounds(key: str, client: str, value: str, ratio: str, unit: str, peer: str) -> Finder:
    """A row measured in interleaved rounds (wire.py, files_cpu.py): its ``ratio`` median,
    with the rounds' spread, and the ``value`` it is a ratio of."""

    def found(g: Groups) -> Found:
        row = _one(g, key, client)
        if not row or row.get(f"{ratio}.median") is None:
            return None
        spread = f"{row[f'{ratio}.min']:g}–{row[f'{ratio}.max']:g}"
        measured = f"{row[f'{value}.median']:g} {unit}"
        return measured, f"{peer}, same rounds (ratio spread {spread})", row[f"{ratio}.median"]

    return found


def _first(*finders: Finder) -> Finder:
    """The first finder that has a figure: interleaved rounds before single runs."""

    def found(g: Groups) -> Found:
        for finder in finders:
            if (got := finder(g)) is not None:
                return got
        return None

    return found


def _boot_serial(g: Groups) -> Found:
    return _ratio(g, "boot:create", "p50_ms", "ours", "bare bwrap (floor)", "ms")


def _boot_serial_cold(g: Groups) -> Found:
    """The same build with spares off (``--spares 0``): every create a cold boot (each
    joins a ready network)."""
    return _ratio(g, "boot:create", "p50_ms", "ours cold", "bare bwrap (floor)", "ms")


def _boot_serial_cold_own_network(g: Groups) -> Found:
    """Spares and ready networks off: each boot makes its own network."""
    return _ratio(g, "boot:create", "p50_ms", "ours cold, own network", "bare bwrap (floor)", "ms")


def _boot_concurrent(g: Groups) -> Found:
    """Cold boots (``--spares 0``): the default server's later rounds claim spares."""
    return _ratio(g, "boot:concurrent", "wall_s", "ours cold", "baseline", "s")


def _exec(client: str) -> Finder:
    return _first(
        _rounds("wire:exec", client, "p50_ms", "p50_vs_floor", "ms", "raw httpx (floor)"),
        lambda g: _ratio(g, "compare:exec", "p50_ms", client, "raw httpx (floor)", "ms"),
    )


def _exec_cpu(client: str) -> Finder:
    return _first(
        _rounds(
            "wire:exec", client, "cpu_ms_per_call", "cpu_vs_official_sync", "ms", "official sync"
        ),
        lambda g: _ratio(g, "compare:exec", "cpu_ms_per_call", client, "official sync", "ms"),
    )


def _per_gib(key: str, client: str, rounds_key: str, rounds_client: str) -> Finder:
    return _first(
        _rounds(
            rounds_key,
            rounds_client,
            "cpu_s_per_gib",
            "cpu_vs_official_sync",
            "CPU s/GiB",
            "official sync",
        ),
        lambda g: _ratio(g, key, "cpu_s_per_gib", client, "official sync", "CPU s/GiB"),
    )


def _fanout(client: str) -> Finder:
    """Commands/s against the official SDK's, with the ceiling any client could reach on
    this machine (compare.py's CPU account of the same run)."""

    def found(g: Groups) -> Found:
        got = _ratio(
            g, "compare:fanout", "commands_per_s", client, "official async", "cmd/s", capsules=64
        )
        row = _one(g, "compare:fanout", client, capsules=64)
        if got is None or not row or row.get("ceiling_vs_official_async") is None:
            return got
        note = got[1]
        if row.get("vs_official_async_min") is not None:
            note += (
                f", {row['rounds']} rounds (ratio spread {row['vs_official_async_min']:g}"
                f"–{row['vs_official_async_max']:g})"
            )
        ceiling = f"; a client costing nothing would reach {row['ceiling_vs_official_async']:g}"
        return got[0], note + ceiling, got[2]

    return found


def _startup(key: str, note: str) -> Finder:
    return lambda g: _field(g, key, "ours", "ms", "ms", note)


def _import(g: Groups) -> Found:
    return _ratio(g, "startup:import", "ms", "ours", "official", "ms")


def _streams(field: str, unit: str) -> Finder:
    def found(g: Groups) -> Found:
        values = [r[field] for r in g.get("compare:scale", []) if r.get(field) is not None]
        if not values:
            return None
        worst = max(values)
        return f"{worst:g} {unit}", "worst of the scale rows", float(worst)

    return found


#: (figure, how to find it, target as text, comparison, bound)
TARGETS: list[tuple[str, Finder, str, Callable[[float, float], bool], float]] = [
    (
        "capsule create→running, serial p50 (warm spares: default)",
        _boot_serial,
        "≤ 3×",
        operator.le,
        3.0,
    ),
    ("capsule create→running, serial p50, cold boot", _boot_serial_cold, "≤ 3×", operator.le, 3.0),
    (
        "capsule create→running, serial p50, cold boot making its own network",
        _boot_serial_cold_own_network,
        "≤ 3×",
        operator.le,
        3.0,
    ),
    (
        "32 concurrent creates, wall, cold boot",
        _boot_concurrent,
        "≤ 0.5× today's main",
        operator.le,
        0.5,
    ),
    *[
        (f"exec `true` round trip p50, {c}", _exec(f"ours {c}"), "≤ 1.05×", operator.le, 1.05)
        for c in ("asyncio", "trio", "sync")
    ],
    *[
        (f"exec client CPU per call, {c}", _exec_cpu(f"ours {c}"), "≤ 1.0×", operator.le, 1.0)
        for c in ("asyncio", "trio", "sync")
    ],
    *[
        (
            f"stream 256 MiB, client CPU/GiB, {c}",
            _per_gib("compare:stream", f"ours {c}", "wire:stream", f"ours {c}, binary frames"),
            "≤ 0.3×",
            operator.le,
            0.3,
        )
        for c in ("asyncio", "trio")
    ],
    *[
        (
            f"{d}, client CPU/GiB, {c} API",
            _per_gib(f"compare:files {d}", f"ours {c}", f"files_cpu:files {d}", f"ours {c}"),
            f"≤ {bound}×",
            operator.le,
            bound,
        )
        for d in ("download", "upload")
        for c, bound in (("asyncio", 1.0), ("trio", 1.0), ("sync", 1.15))
    ],
    *[
        (f"fan-out 64 × 10, commands/s, {c}", _fanout(f"ours {c}"), "≥ 2×", operator.ge, 2.0)
        for c in ("asyncio", "trio")
    ],
    (
        "`wrenn --help`, added to `python -c pass`",
        _startup("startup:wrenn --help", "added to python -c pass"),
        "≤ 60 ms",
        operator.le,
        60.0,
    ),
    (
        "pytest start-up added by the plugin",
        _startup("startup:pytest start-up added by the plugin", "added to pytest"),
        "≤ 20 ms",
        operator.le,
        20.0,
    ),
    ("`import wrenn`", _import, "≤ 0.5×", operator.le, 0.5),
    (
        "1,000 open streams: agent threads",
        _streams("agent_threads", "threads"),
        "≤ 10",
        operator.le,
        10.0,
    ),
    (
        "1,000 open streams: server growth per stream",
        _streams("server_rss_per_stream_kib", "KiB"),
        "≤ 40 KiB",
        operator.le,
        40.0,
    ),
]


def rows(groups: Groups) -> list[dict[str, Any]]:
    """One row per target: measured, against, ratio (or value), target, met."""
    out = []
    for figure, find, target, compare, bound in TARGETS:
        found = find(groups)
        if found is None:
            out.append(
                {
                    "figure": figure,
                    "measured": None,
                    "against": None,
                    "ratio or value": None,
                    "target": target,
                    "met": "not measured",
                }
            )
            continue
        measured, against, value = found
        out.append(
            {
                "figure": figure,
                "measured": measured,
                "against": against,
                "ratio or value": round(value, 2),
                "target": target,
                "met": "yes" if compare(value, bound) else "no",
            }
        )
    return out


def summary(groups: Groups) -> str:
    table = rows(groups)
    met = sum(r["met"] == "yes" for r in table)
    missing = sum(r["met"] == "not measured" for r in table)
    return f"{met} of {len(table)} targets met" + (f", {missing} not measured." if missing else ".")


if __name__ == "__main__":
    import report

    groups = report.group(report.load())
    print(report.table(rows(groups)))
    print(summary(groups))
