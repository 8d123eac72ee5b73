"""Node / relationship counts against the last known-good snapshot, with tolerances.

The snapshot is a JSON file named by the target (`graph.snapshot`), written when the
graph was last verified good:

    {"profile": "kfm.graph-count-snapshot.v1", "taken_at": "2026-06-01T00:00:00.000Z",
     "labels": {"Item": 6, ...}, "relationship_types": {"ITEM": 6, ...},
     "tolerance": {"default": {"abs": 1, "pct": 10},
                   "labels": {"Catalog": {"abs": 0, "pct": 0}}, "relationship_types": {}}}

A count is anomalous when |current - baseline| > max(abs, pct% of baseline). A name
absent from the snapshot has baseline 0; a name absent from the graph has count 0.
Containment freezes the graph (data writes blocked: `GraphBackend.freeze`); recovery
re-syncs what the graph lost from its source catalog (graph_sync) and lifts the freeze
only once a fresh count is back within tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import BLOCKING, HOLD, Finding
from ..catalog.health import read_json_object
from .db import QUARANTINE_LABEL

PROFILE = "kfm.graph-count-snapshot.v1"
SECTIONS = {"labels": "label", "relationship_types": "relationship type"}


@dataclass(frozen=True)
class Tolerance:
    abs: int = 0
    pct: float = 0.0

    def allowed(self, baseline: int) -> float:
        return max(float(self.abs), self.pct * baseline / 100.0)


@dataclass
class Snapshot:
    taken_at: str
    counts: dict[str, dict[str, int]]  # section -> name -> count
    default: Tolerance
    overrides: dict[str, dict[str, Tolerance]]

    def tolerance(self, section: str, name: str) -> Tolerance:
        return self.overrides.get(section, {}).get(name, self.default)


def _tolerance(value: Any) -> Tolerance | None:
    if not isinstance(value, dict):
        return None
    absolute, pct = value.get("abs", 0), value.get("pct", 0)
    if isinstance(absolute, bool) or not isinstance(absolute, int) or absolute < 0:
        return None
    if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
        return None
    return Tolerance(absolute, float(pct))


def _counts(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        return None
    return {str(k): int(v) for k, v in value.items()}


def load_snapshot(
    path: Path | None, shown: str = "graph.snapshot"
) -> tuple[Snapshot | None, list[Finding]]:
    if path is None:
        return None, [Finding("GRAPH_SNAPSHOT_MISSING", shown, "/", HOLD, "no snapshot named")]
    document, code = read_json_object(path)
    if document is None:
        return None, [Finding("GRAPH_SNAPSHOT_UNREADABLE", shown, "/", HOLD, code or "")]
    counts = {key: _counts(document.get(key)) for key in SECTIONS}
    tolerance = document.get("tolerance") if isinstance(document.get("tolerance"), dict) else {}
    assert isinstance(tolerance, dict)
    default = _tolerance(tolerance.get("default", {}))
    overrides: dict[str, dict[str, Tolerance]] = {}
    bad = [key for key, value in counts.items() if value is None]
    for key in SECTIONS:
        for name, value in (tolerance.get(key) or {}).items():
            parsed = _tolerance(value)
            if parsed is None:
                bad.append(f"tolerance/{key}/{name}")
            else:
                overrides.setdefault(key, {})[str(name)] = parsed
    if document.get("profile") != PROFILE or default is None or bad:
        why = f"not a {PROFILE} snapshot" + (f" (bad: {', '.join(sorted(bad))})" if bad else "")
        return None, [Finding("GRAPH_SNAPSHOT_INVALID", shown, "/", HOLD, why)]
    valid = {key: value or {} for key, value in counts.items()}
    return Snapshot(str(document.get("taken_at", "?")), valid, default, overrides), []


@dataclass
class CountRow:
    section: str  # labels | relationship_types
    name: str
    baseline: int
    current: int
    allowed: float
    status: str  # ok | drop | surge

    @property
    def delta(self) -> int:
        return self.current - self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta}


def compare(snapshot: Snapshot, current: Mapping[str, Mapping[str, int]]) -> list[CountRow]:
    """One row per label / relationship type known to either side, sorted."""
    rows = []
    for section in SECTIONS:
        base = snapshot.counts.get(section, {})
        live = current.get(section, {})
        for name in sorted(set(base) | set(live)):
            before, now = base.get(name, 0), live.get(name, 0)
            allowed = snapshot.tolerance(section, name).allowed(before)
            status = "ok"
            if abs(now - before) > allowed:
                status = "drop" if now < before else "surge"
            rows.append(CountRow(section, name, before, now, allowed, status))
    return rows


def count_findings(rows: list[CountRow]) -> list[Finding]:
    out = []
    for row in rows:
        if row.status == "ok":
            continue
        code = "GRAPH_COUNT_DROP" if row.status == "drop" else "GRAPH_COUNT_SURGE"
        subject = f":{row.name}" if row.section == "labels" else f"[:{row.name}]"
        out.append(
            Finding(
                code,
                subject,
                "/",
                BLOCKING,
                f"{row.current} now, {row.baseline} in the snapshot ({row.delta:+d}; "
                f"tolerance ±{row.allowed:g})",
            )
        )
    return out


def live_counts(
    labels: Mapping[str, int], rel_types: Mapping[str, int]
) -> dict[str, dict[str, int]]:
    """Counts to compare; the :Quarantined marker is containment, not data: left out."""
    kept = {name: count for name, count in labels.items() if name != QUARANTINE_LABEL}
    return {"labels": kept, "relationship_types": dict(rel_types)}
