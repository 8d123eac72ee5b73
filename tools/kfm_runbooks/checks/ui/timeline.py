"""Timeline desync: a time-enabled layer serves other time steps than its registry declares.

For every time-enabled layer of the published registry, the registry's time extent
(`time.values`, `start`, `end`, `step` as an ISO 8601 duration) must be coherent, and the
steps the API serves (`GET /api/v1/layers/<id>/times`) must equal it: same values, same
(ascending) order, the declared step between neighbours. Story nodes that pin a time
must pin one the layer serves. Codes:

- UI_TIME_REGISTRY_INCOHERENT: the registry's own extent contradicts itself.
- UI_TIME_INDEX_UNAVAILABLE: the layer's time index does not answer (404 / 503).
- UI_TIME_STEPS_MISSING / UI_TIME_STEPS_UNEXPECTED: registry steps not served / served
  steps the registry does not declare; UI_TIME_ORDER_MISMATCH; UI_TIME_DUPLICATE;
  UI_TIME_STEP_IRREGULAR; UI_TIME_VALUE_INVALID (not an ISO 8601 instant).
- UI_STORY_TIME_NOT_SERVED, UI_STORY_TIME_NOT_IN_REGISTRY: a story node's pinned time.
- UI_SERVICE_UNREACHABLE (HOLD).

The declared extent is KFM's layer registry named by the target (`ui.layer_registry`),
else the API's own layer listing; story nodes are the stories of `ui.stories` as the API
serves them. Recovery sets the served time steps to the declared ones through the admin
interface the target names (op `ui.set_time_index`; undo `ui.restore_time_index` puts
the previous index back); without one it is a manual action.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from .base import UiSystem

DURATION = re.compile(
    r"P(?:(?P<Y>\d+)Y)?(?:(?P<M>\d+)M)?(?:(?P<W>\d+)W)?(?:(?P<D>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)
DESYNC_CODES = frozenset(
    {
        "UI_TIME_INDEX_UNAVAILABLE",
        "UI_TIME_STEPS_MISSING",
        "UI_TIME_STEPS_UNEXPECTED",
        "UI_TIME_ORDER_MISMATCH",
        "UI_TIME_DUPLICATE",
        "UI_TIME_STEP_IRREGULAR",
        "UI_TIME_VALUE_INVALID",
    }
)
STORY_CODES = frozenset({"UI_STORY_TIME_NOT_SERVED", "UI_STORY_TIME_NOT_IN_REGISTRY"})
REGISTRY_CODES = frozenset({"UI_TIME_REGISTRY_INCOHERENT"})


def instant(value: Any) -> datetime | None:
    """An ISO 8601 instant with a zone (naive times are not instants)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def label(value: Any) -> str:
    """A step as people read it: the date alone when the instant is midnight UTC."""
    moment = instant(value)
    if moment is None:
        return str(value)[:40]
    if moment.utcoffset() == timedelta(0) and (moment.hour, moment.minute, moment.second) == (
        0,
        0,
        0,
    ):
        return moment.date().isoformat()
    return moment.isoformat()


def add_step(when: datetime, step: str) -> datetime | None:
    """`when` + an ISO 8601 duration (calendar months and years; day clamped to month end)."""
    match = DURATION.fullmatch(step) if isinstance(step, str) and step != "P" else None
    if match is None or not any(match.groupdict().values()):
        return None
    part = {k: int(v or 0) for k, v in match.groupdict().items()}
    months = when.month - 1 + part["M"] + 12 * part["Y"]
    year, month = when.year + months // 12, months % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    moved = when.replace(year=year, month=month, day=day)
    return moved + timedelta(
        weeks=part["W"], days=part["D"], hours=part["h"], minutes=part["m"], seconds=part["s"]
    )


def irregular_gaps(values: list[datetime], step: str) -> int:
    return sum(1 for a, b in pairwise(values) if add_step(a, step) != b)


@dataclass
class LayerTimes:
    layer_id: str
    step: str
    registry: list[str]
    served: list[Any] | None  # None: the index did not answer
    served_status: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not [f for f in self.findings if f.code in DESYNC_CODES]

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer_id,
            "step": self.step,
            "registry_steps": len(self.registry),
            "served_steps": None if self.served is None else len(self.served),
            "index": self.served_status,
            "in_sync": self.in_sync,
            "codes": sorted({f.code for f in self.findings}),
        }


@dataclass
class TimelineScan:
    layers: list[LayerTimes]
    nodes: list[dict[str, Any]]
    findings: list[Finding]
    reachable: bool
    declared_by: str = "ui.layer_registry"  # where the declared time steps come from
    stories_named: bool = False  # the target names its stories (ui.stories)

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def desynced(self) -> list[LayerTimes]:
        return [t for t in self.layers if not t.in_sync and t.served_status != "unreachable"]


def registry_findings(layer: dict[str, Any]) -> tuple[list[str], str, list[Finding]]:
    """(declared values, step, findings about the registry's own extent)."""
    where = "/registry/time"
    declared = layer.get("time")
    time: dict[str, Any] = declared if isinstance(declared, dict) else {}
    values = time.get("values")
    step = str(time.get("step", ""))
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        return (
            [],
            step,
            [
                Finding(
                    "UI_TIME_REGISTRY_INCOHERENT",
                    layer["id"],
                    where,
                    BLOCKING,
                    "no time values declared",
                )
            ],
        )
    problems = []
    parsed = [instant(v) for v in values]
    if any(p is None for p in parsed):
        problems.append("values that are not ISO 8601 instants")
    else:
        moments = [p for p in parsed if p is not None]
        if moments != sorted(set(moments)):
            problems.append("values not strictly ascending")
        if add_step(moments[0], step) is None:
            problems.append(f"step {step!r} is not an ISO 8601 duration")
        elif irregular_gaps(moments, step):
            problems.append(f"{irregular_gaps(moments, step)} gap(s) differ from step {step}")
        if time.get("start") not in (None, values[0]):
            problems.append("start is not the first value")
        if time.get("end") not in (None, values[-1]):
            problems.append("end is not the last value")
    found = [
        Finding("UI_TIME_REGISTRY_INCOHERENT", layer["id"], where, BLOCKING, p) for p in problems
    ]
    return values, step, found


def compare(layer_id: str, registry: list[str], step: str, served: list[Any]) -> list[Finding]:
    """The served steps against the registry's: values, order, duplicates, step."""
    out = []
    where = "/times"
    bad = [v for v in served if instant(v) is None]
    if bad:
        out.append(
            Finding(
                "UI_TIME_VALUE_INVALID",
                layer_id,
                where,
                BLOCKING,
                f"{len(bad)} served value(s) are not ISO 8601 instants",
            )
        )
    declared = set(registry)
    missing = [v for v in registry if v not in served]
    unexpected = [str(v) for v in served if v not in declared and v not in bad]
    if missing:
        out.append(
            Finding(
                "UI_TIME_STEPS_MISSING",
                layer_id,
                where,
                BLOCKING,
                f"{len(missing)} registry step(s) not served: {_short(missing)}",
            )
        )
    if unexpected:
        out.append(
            Finding(
                "UI_TIME_STEPS_UNEXPECTED",
                layer_id,
                where,
                BLOCKING,
                f"{len(unexpected)} served step(s) not in the registry: {_short(unexpected)}",
            )
        )
    moments = [m for m in (instant(v) for v in served) if m is not None]
    if len(set(moments)) != len(moments):
        out.append(
            Finding(
                "UI_TIME_DUPLICATE",
                layer_id,
                where,
                BLOCKING,
                "the same step is served more than once",
            )
        )
    if moments != sorted(moments):
        out.append(
            Finding(
                "UI_TIME_ORDER_MISMATCH",
                layer_id,
                where,
                BLOCKING,
                "served steps are not in ascending order",
            )
        )
    gaps = irregular_gaps(sorted(set(moments)), step) if add_step(_epoch(), step) else 0
    if gaps:
        out.append(
            Finding(
                "UI_TIME_STEP_IRREGULAR",
                layer_id,
                where,
                BLOCKING,
                f"{gaps} of {max(0, len(set(moments)) - 1)} gap(s) differ from "
                f"the declared step {step}",
            )
        )
    return out


def _epoch() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def _short(values: list[str], limit: int = 3) -> str:
    shown = ", ".join(label(v) for v in values[:limit])
    return shown + (f", … (+{len(values) - limit})" if len(values) > limit else "")


def declared_layers(
    system: UiSystem, published: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], str, list[Finding]]:
    """The declared time extent per published layer, and where it comes from.

    KFM's layer registry named by the target (`ui.layer_registry`) when there is one; else
    what the API's own layer listing declares (`time` of each entry)."""
    intended, problems = system.intended("layers")
    if intended is not None:
        return {x["id"]: x for x in intended}, "ui.layer_registry", problems
    return {x["id"]: x for x in published}, "the API's layer listing", []


def scan(system: UiSystem) -> TimelineScan:
    system.forget()
    listed, findings = system.published()
    published = listed or []
    declared, source, problems = declared_layers(system, published)
    findings = findings + problems
    reachable = listed is not None
    layers: list[LayerTimes] = []
    served_by_layer: dict[str, list[Any] | None] = {}
    for layer in published:
        reference = declared.get(layer["id"])
        if reference is None or not reference.get("time"):
            continue
        values, step, problems = registry_findings(reference)
        probe, served = system.served_times(layer)
        status = "unreachable" if probe.status is None else probe.describe()
        entry = LayerTimes(layer["id"], step, values, served, status, problems)
        if probe.status is None:
            reachable = False
        elif served is None:
            entry.findings.append(
                Finding("UI_TIME_INDEX_UNAVAILABLE", layer["id"], "/times", BLOCKING, status)
            )
        else:
            entry.findings += compare(layer["id"], values, step, served)
        served_by_layer[layer["id"]] = served
        layers.append(entry)
        findings += entry.findings
    stories, answers, _ = system.served_stories()
    served_stories = [
        {**story, **body}
        for story in stories or []
        if answers[story["id"]].ok and isinstance(body := answers[story["id"]].json(), dict)
    ]
    nodes, node_findings = _story_nodes(
        served_stories,
        [declared[x["id"]] for x in published if x["id"] in declared],
        served_by_layer,
    )
    findings += node_findings
    if not reachable:
        findings.append(
            Finding(
                "UI_SERVICE_UNREACHABLE",
                "api",
                "/",
                HOLD,
                f"the API did not answer ({system.why_unreachable()}): served time steps cannot "
                "be verified",
            )
        )
    return TimelineScan(
        layers, nodes, sorted(set(findings)), reachable, source, stories is not None
    )


def _story_nodes(
    stories: list[dict[str, Any]],
    published: list[dict[str, Any]],
    served: dict[str, list[Any] | None],
) -> tuple[list[dict[str, Any]], list[Finding]]:
    rows, out = [], []
    layers = {layer["id"]: layer for layer in published}
    for story in stories:
        nodes = story.get("nodes")
        for node in nodes if isinstance(nodes, list) else []:
            if not isinstance(node, dict) or node.get("time") is None:
                continue
            subject = f"{story['id']}/{node.get('id')}"
            layer = layers.get(str(node.get("layer")))
            declared = (layer or {}).get("time") or {}
            values = declared.get("values") if isinstance(declared, dict) else None
            times = served.get(str(node.get("layer")))
            state = "layer not published or not time-enabled"
            if layer is not None and isinstance(values, list):
                state = "served" if times is not None and node["time"] in times else "not served"
                if node["time"] not in values:
                    out.append(
                        Finding(
                            "UI_STORY_TIME_NOT_IN_REGISTRY",
                            subject,
                            "/time",
                            BLOCKING,
                            f"{label(node['time'])} is not a declared step",
                        )
                    )
                if times is not None and node["time"] not in times:
                    out.append(
                        Finding(
                            "UI_STORY_TIME_NOT_SERVED",
                            subject,
                            "/time",
                            BLOCKING,
                            f"{label(node['time'])} is not served by {layer['id']}",
                        )
                    )
            rows.append(
                {
                    "node": subject,
                    "layer": str(node.get("layer")),
                    "time": label(node["time"]),
                    "state": state,
                }
            )
    return rows, out


# --- recovery (only through run.action) ---------------------------------------------------


def regenerate_time_index(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Set the served time steps of a layer to the declared ones (admin ui.set_time_index)."""
    listed, _ = system.published()
    declared, _, _ = declared_layers(system, listed or [])
    layer = declared.get(layer_id)
    values, _, problems = registry_findings(layer) if layer else ([], "", [])
    if layer is None or problems:
        raise ValueError(f"{layer_id}: the declared time extent is missing or incoherent")
    return system.admin("ui.set_time_index", {"layer_id": layer_id, "values": values})


def restore_time_index(
    system: UiSystem, layer_id: str, previous: Any, sha256: str
) -> dict[str, Any]:
    """Undo of regenerate: put the previous index back if it is still what was set."""
    return system.admin(
        "ui.restore_time_index", {"layer_id": layer_id, "previous": previous, "sha256": sha256}
    )


@undoable("ui_timeline.restore_time_index")
def _undo_regenerate(target: Target, layer_id: str, previous: Any, sha256: str) -> dict[str, Any]:
    return restore_time_index(UiSystem.from_target(target), layer_id, previous, sha256)
