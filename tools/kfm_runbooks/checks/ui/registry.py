"""Layer registry mismatch: a published layer does not load, or the registry drifted.

Every layer the API publishes (`GET /api/v1/layers`, asked with each reading role of
`ui.read_roles`) must answer its descriptor (`GET /api/v1/layers/<id>`) and a tile
(`/tiles/0/0/0`), asked with the role its sensitivity maps to. The published layers are
compared with the intended registry: KFM's layer registry file the target names
(`ui.layer_registry`: ids, fields, order). Codes:

- UI_LAYER_DESCRIPTOR_FAILED, UI_LAYER_TILE_FAILED: a published layer does not load.
- UI_REGISTRY_LAYER_MISSING (intended, not published), UI_REGISTRY_LAYER_UNEXPECTED,
  UI_REGISTRY_LAYER_DRIFT (a field differs), UI_REGISTRY_ORDER_DRIFT,
  UI_REGISTRY_DUPLICATE_ID, UI_LAYER_ID_INVALID, UI_LISTING_UNAVAILABLE.
- UI_REFERENCE_MISSING / UI_REFERENCE_UNREADABLE (HOLD): no intended registry to compare
  with; UI_SERVICE_UNREACHABLE (HOLD): the API did not answer.

Containment withdraws an unloadable layer (admin op `ui.withdraw_layer`; undo
`ui.publish_layer` puts the same entry back at its place). Recovery restores the tiles of
an intended layer whose tiles fail (`ui.restore_tile_source`) and publishes an intended
layer that is not published at its intended place (`ui.publish_layer`, the reference
entry). Without an admin interface in the target, each step is a manual action.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from .base import Probe, UiSystem, intended_position

LOAD_CODES = frozenset({"UI_LAYER_DESCRIPTOR_FAILED", "UI_LAYER_TILE_FAILED"})
DRIFT_CODES = frozenset(
    {
        "UI_REGISTRY_LAYER_MISSING",
        "UI_REGISTRY_LAYER_UNEXPECTED",
        "UI_REGISTRY_LAYER_DRIFT",
        "UI_REGISTRY_ORDER_DRIFT",
        "UI_REGISTRY_DUPLICATE_ID",
        "UI_LAYER_ID_INVALID",
        "UI_LAYER_SENSITIVITY_MISSING",
        "UI_LISTING_UNAVAILABLE",
    }
)
REFERENCE_CODES = frozenset({"UI_REFERENCE_MISSING", "UI_REFERENCE_UNREADABLE"})
COLUMNS = ("intended", "published", "descriptor", "tile")


@dataclass
class LayerStatus:
    layer_id: str
    title: str
    sensitivity: str
    intended: bool | None  # None: no reference to say
    published: bool
    descriptor: str  # "HTTP 200", "HTTP 404 (unknown layer)", "unreachable", "-"
    tile: str

    @property
    def loadable(self) -> bool:
        return self.descriptor == "HTTP 200" and self.tile == "HTTP 200"

    @property
    def probed(self) -> bool:
        return self.published and not self.descriptor.startswith("unreachable")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loadable": self.loadable if self.published else None}

    def cells(self) -> list[bool | None]:
        """One value per COLUMNS entry for the status grid (None: not applicable)."""
        return [
            self.intended,
            self.published,
            (self.descriptor == "HTTP 200") if self.probed else None,
            (self.tile == "HTTP 200") if self.probed else None,
        ]


@dataclass
class RegistryScan:
    layers: list[LayerStatus]
    findings: list[Finding]
    published_ids: list[str]
    intended_ids: list[str] | None  # None: the target names no usable reference
    reachable: bool

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def unloadable(self) -> list[LayerStatus]:
        """Published layers that the API does not load (what containment withdraws)."""
        return [s for s in self.layers if s.probed and not s.loadable]

    def status(self, layer_id: str) -> LayerStatus | None:
        return next((s for s in self.layers if s.layer_id == layer_id), None)


def _probe_text(probe: Probe, expect_id: str | None = None) -> str:
    if probe.status == 200 and expect_id is not None:
        body = probe.json()
        if not isinstance(body, dict) or body.get("id") != expect_id:
            return "HTTP 200 (wrong descriptor)"
    if probe.status == 200 and expect_id is None and not probe.body:
        return "HTTP 200 (empty tile)"
    return "unreachable" if probe.status is None else probe.describe()


def _compare(published: list[dict[str, Any]], intended: list[dict[str, Any]]) -> list[Finding]:
    out = []
    by_id = {layer["id"]: layer for layer in published}
    want = {layer["id"]: layer for layer in intended}
    for layer_id in sorted(want.keys() - by_id.keys()):
        out.append(
            Finding(
                "UI_REGISTRY_LAYER_MISSING",
                layer_id,
                "/layers",
                BLOCKING,
                "in the intended registry (ui.layer_registry) but not published by the API",
            )
        )
    for layer_id in sorted(by_id.keys() - want.keys()):
        out.append(
            Finding(
                "UI_REGISTRY_LAYER_UNEXPECTED",
                layer_id,
                "/layers",
                BLOCKING,
                "published by the API but not in the intended registry",
            )
        )
    for layer_id in sorted(by_id.keys() & want.keys()):
        for key in sorted(by_id[layer_id].keys() | want[layer_id].keys()):
            if by_id[layer_id].get(key) != want[layer_id].get(key):
                out.append(
                    Finding(
                        "UI_REGISTRY_LAYER_DRIFT",
                        layer_id,
                        f"/{key}",
                        BLOCKING,
                        "differs from the intended registry",
                    )
                )
    common = [i for i in (layer["id"] for layer in published) if i in want]
    if common != [i for i in (layer["id"] for layer in intended) if i in by_id]:
        out.append(
            Finding(
                "UI_REGISTRY_ORDER_DRIFT",
                "layers",
                "/layers",
                BLOCKING,
                "layer order differs from the intended registry",
            )
        )
    return out


def scan(system: UiSystem) -> RegistryScan:
    """Probe every published layer; compare the published layers with the intended ones."""
    system.forget()
    published, findings = system.published()
    intended, problems = system.intended("layers")
    findings = findings + problems
    reachable = published is not None
    shown = published or []
    if intended is not None and published is not None:
        findings += _compare(published, intended)
    statuses: list[LayerStatus] = []
    seen: dict[str, dict[str, Any]] = {}
    for layer in shown + (intended or []):
        seen.setdefault(layer["id"], layer)
    published_ids = [layer["id"] for layer in shown]
    intended_ids = None if intended is None else [layer["id"] for layer in intended]
    for layer_id, layer in seen.items():
        status = LayerStatus(
            layer_id,
            str(layer.get("title", "")),
            str(layer["sensitivity"]),
            intended=None if intended_ids is None else layer_id in intended_ids,
            published=layer_id in published_ids,
            descriptor="-",
            tile="-",
        )
        if status.published:
            descriptor, tile = system.probe_layer(layer)
            status.descriptor = _probe_text(descriptor, layer_id)
            status.tile = _probe_text(tile)
            reachable = reachable and descriptor.status is not None and tile.status is not None
        statuses.append(status)
        findings += _layer_findings(status)
    if not reachable:
        findings.append(
            Finding(
                "UI_SERVICE_UNREACHABLE",
                "api",
                "/",
                HOLD,
                f"the API did not answer ({system.why_unreachable()}): layers cannot be verified",
            )
        )
    return RegistryScan(statuses, sorted(set(findings)), published_ids, intended_ids, reachable)


def _layer_findings(status: LayerStatus) -> list[Finding]:
    out = []
    if status.probed and status.descriptor != "HTTP 200":
        out.append(
            Finding(
                "UI_LAYER_DESCRIPTOR_FAILED",
                status.layer_id,
                "/",
                BLOCKING,
                f"descriptor: {status.descriptor}",
            )
        )
    if status.probed and status.tile != "HTTP 200":
        out.append(
            Finding(
                "UI_LAYER_TILE_FAILED", status.layer_id, "/tile", BLOCKING, f"tile: {status.tile}"
            )
        )
    return out


# --- containment and recovery (only through run.action -> the target's admin) -------------


def withdraw_layer(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Take a layer out of the published registry. Idempotent; returns the undo data."""
    return system.admin("ui.withdraw_layer", {"layer_id": layer_id})


def republish_layer(system: UiSystem, entry: dict[str, Any], index: int) -> dict[str, Any]:
    """Put a registry entry back at `index` (undo of withdraw). Idempotent."""
    return system.admin("ui.publish_layer", {"entry": entry, "index": int(index)})


def publish_intended(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Publish the intended (reference) entry of a layer at its intended place."""
    intended, _ = system.intended("layers")
    entry = next((x for x in intended or [] if x["id"] == layer_id), None)
    if entry is None:
        raise ValueError(f"{layer_id} is not in the intended registry (ui.layer_registry)")
    published, _ = system.published()
    index = intended_position(
        [x["id"] for x in published or []], [x["id"] for x in intended or []], layer_id
    )
    return republish_layer(system, entry, index)


def restore_tiles(system: UiSystem, layer_id: str) -> dict[str, Any]:
    return system.admin("ui.restore_tile_source", {"layer_id": layer_id})


def is_published(system: UiSystem, layer_id: str) -> bool | None:
    system.forget()
    published, _ = system.published()
    return None if published is None else layer_id in [x["id"] for x in published]


def tile_answers(system: UiSystem, layer_id: str) -> str:
    layer = {"id": layer_id, "sensitivity": _sensitivity(system, layer_id)}
    return _probe_text(
        system.get(system.route("tile", layer_id), system.role_for(layer["sensitivity"]))
    )


def _sensitivity(system: UiSystem, layer_id: str) -> str:
    intended, _ = system.intended("layers")
    published, _ = system.published()
    for layer in (published or []) + (intended or []):
        if layer["id"] == layer_id:
            return str(layer["sensitivity"])
    return "public"


@undoable("ui_registry.republish_layer")
def _undo_withdraw(target: Target, entry: dict[str, Any], index: int) -> dict[str, Any]:
    return republish_layer(UiSystem.from_target(target), entry, index)


@undoable("ui_registry.withdraw_layer")
def _undo_republish(target: Target, layer_id: str) -> dict[str, Any]:
    return withdraw_layer(UiSystem.from_target(target), layer_id)


@undoable("ui_registry.remove_tile_source")
def _undo_restore_source(target: Target, layer_id: str, sha256: str) -> dict[str, Any]:
    return UiSystem.from_target(target).admin(
        "ui.remove_tile_source", {"layer_id": layer_id, "sha256": sha256}
    )


# --- recovery planning -------------------------------------------------------------------


@dataclass
class RecoveryStep:
    kind: str  # restore-tiles | publish
    layer_id: str
    detail: str
    blocked: bool = False

    @property
    def title(self) -> str:
        if self.kind == "restore-tiles":
            return f"Restore the tiles of {self.layer_id}"
        return f"Publish {self.layer_id} at its intended place (entry from ui.layer_registry)"

    @property
    def instruction(self) -> str:
        if self.kind == "restore-tiles":
            return (
                f"Republish the tile artifacts of layer {self.layer_id} (the tile service must "
                f"answer {self.layer_id}/tiles/0/0/0 with HTTP 200), then re-run this runbook"
            )
        return (
            f"Add layer {self.layer_id} to the published layer registry exactly as in the "
            "intended registry (ui.layer_registry), PR-first, then re-run this runbook"
        )


def recovery_plan(
    scan_result: RegistryScan, withdrawn: set[str] | None = None
) -> list[RecoveryStep]:
    """Intended layers whose tiles fail, then intended layers not published.

    `withdrawn`: layers containment took down in this run (their tiles failed)."""
    steps: list[RecoveryStep] = []
    if scan_result.intended_ids is None or not scan_result.reachable:
        return steps
    withdrawn = withdrawn or set()
    for layer_id in scan_result.intended_ids:
        status = scan_result.status(layer_id)
        tiles_fail = status is not None and status.probed and status.tile != "HTTP 200"
        if tiles_fail or layer_id in withdrawn:
            steps.append(RecoveryStep("restore-tiles", layer_id, status.tile if status else "-"))
    for layer_id in scan_result.intended_ids:
        if layer_id not in scan_result.published_ids:
            steps.append(RecoveryStep("publish", layer_id, "not published"))
    return steps
