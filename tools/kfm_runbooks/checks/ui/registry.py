"""Layer registry mismatch: a layer is published but does not load, or the registry drifted.

Every layer of the published registry (live/state/layers.json) must answer its descriptor
(`GET /api/v1/layers/<id>`) and a tile (`/tiles/0/0/0`), asked with the least-privileged
role allowed to read it. The published registry is compared with the intended one
(live/config.json `layers`: ids, fields, order) and with what the API advertises
(`GET /api/v1/layers`). Codes:

- UI_LAYER_DESCRIPTOR_FAILED, UI_LAYER_TILE_FAILED: a published layer does not load;
  UI_LAYER_TILE_SOURCE_MISSING / _INVALID: its tile source (state/tiles/<id>/source.json).
- UI_REGISTRY_LAYER_MISSING (intended, not published), UI_REGISTRY_LAYER_UNEXPECTED,
  UI_REGISTRY_LAYER_DRIFT (a field differs), UI_REGISTRY_ORDER_DRIFT,
  UI_REGISTRY_LISTING_DRIFT (the API advertises other layers than the registry publishes).
- UI_SERVICE_UNREACHABLE (HOLD): the API did not answer; nothing can be verified.

Containment withdraws an unloadable layer from the published registry (undo re-adds the
same entry at its place). Recovery restores a missing tile source from the intended
configuration — the intended entry's `tiles` definition, else the convention every other
served source shares — and re-publishes an intended layer at its intended place once its
source is back. Each step is idempotent and has a registered undo.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from .base import TILE, Probe, UiSystem, intended_position, valid_id

LOAD_CODES = frozenset(
    {
        "UI_LAYER_DESCRIPTOR_FAILED",
        "UI_LAYER_TILE_FAILED",
        "UI_LAYER_TILE_SOURCE_MISSING",
        "UI_LAYER_TILE_SOURCE_INVALID",
    }
)
DRIFT_CODES = frozenset(
    {
        "UI_REGISTRY_LAYER_MISSING",
        "UI_REGISTRY_LAYER_UNEXPECTED",
        "UI_REGISTRY_LAYER_DRIFT",
        "UI_REGISTRY_ORDER_DRIFT",
        "UI_REGISTRY_DUPLICATE_ID",
        "UI_LAYER_ID_INVALID",
    }
)
LISTING_CODES = frozenset({"UI_REGISTRY_LISTING_DRIFT"})
COLUMNS = ("intended", "published", "advertised", "descriptor", "tile", "tile source")


@dataclass
class LayerStatus:
    layer_id: str
    title: str
    sensitivity: str
    intended: bool
    published: bool
    advertised: bool
    descriptor: str  # "200", "404 (unknown layer)", "unreachable", "-" (not published)
    tile: str
    source: str  # present | missing | invalid

    @property
    def loadable(self) -> bool:
        return self.descriptor == "HTTP 200" and self.tile == "HTTP 200"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loadable": self.loadable if self.published else None}

    def cells(self) -> list[bool | None]:
        """One value per COLUMNS entry for the status grid (None: not applicable)."""
        probed = self.published and self.descriptor != "unreachable"
        return [
            self.intended,
            self.published,
            self.advertised,
            (self.descriptor == "HTTP 200") if probed else None,
            (self.tile == "HTTP 200") if probed else None,
            self.source == "present",
        ]


@dataclass
class RegistryScan:
    layers: list[LayerStatus]
    findings: list[Finding]
    published_ids: list[str]
    intended_ids: list[str]
    reachable: bool

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def unloadable(self) -> list[LayerStatus]:
        """Published layers that the API does not load (what containment withdraws)."""
        return [
            s
            for s in self.layers
            if s.published and s.descriptor != "unreachable" and not s.loadable
        ]

    def status(self, layer_id: str) -> LayerStatus | None:
        return next((s for s in self.layers if s.layer_id == layer_id), None)


def _probe_text(probe: Probe, expect_id: str | None = None) -> str:
    if probe.status == 200 and expect_id is not None:
        body = probe.json()
        if not isinstance(body, dict) or body.get("id") != expect_id:
            return "HTTP 200 (wrong descriptor)"
    if probe.status == 200 and expect_id is None and not probe.body:
        return "HTTP 200 (empty tile)"
    return probe.describe()


def _advertised(system: UiSystem, sensitivities: set[str]) -> tuple[set[str], bool]:
    """Layer ids `GET /api/v1/layers` advertises, each level asked with its own role."""
    ids: set[str] = set()
    for level in sorted(sensitivities):
        probe = system.get("/api/v1/layers", system.role_for(level))
        if probe.status is None:
            return ids, False
        body = probe.json()
        listed = body.get("layers") if probe.ok and isinstance(body, dict) else None
        for layer in listed if isinstance(listed, list) else []:
            if isinstance(layer, dict) and layer.get("sensitivity") == level:
                ids.add(str(layer.get("id")))
    return ids, True


def _compare(published: list[dict[str, Any]], intended: list[dict[str, Any]]) -> list[Finding]:
    out = []
    by_id = {layer["id"]: layer for layer in published}
    want = {layer["id"]: layer for layer in intended}
    for layer_id in want.keys() - by_id.keys():
        out.append(
            Finding(
                "UI_REGISTRY_LAYER_MISSING",
                layer_id,
                "/layers",
                BLOCKING,
                "intended (config.json) but not in the published registry",
            )
        )
    for layer_id in by_id.keys() - want.keys():
        out.append(
            Finding(
                "UI_REGISTRY_LAYER_UNEXPECTED",
                layer_id,
                "/layers",
                BLOCKING,
                "published but not in the intended registry",
            )
        )
    for layer_id in by_id.keys() & want.keys():
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
                "layers.json",
                "/layers",
                BLOCKING,
                "layer order differs from the intended registry",
            )
        )
    return out


def scan(system: UiSystem) -> RegistryScan:
    """Probe every published layer; compare the registry with the intended one and the API."""
    published, findings = system.registry()
    intended, problems = system.intended("layers")
    findings += problems
    findings += _compare(published, intended)
    levels = {layer["sensitivity"] for layer in published + intended}
    advertised, reachable = _advertised(system, levels)
    statuses: list[LayerStatus] = []
    seen: dict[str, dict[str, Any]] = {}
    for layer in published + intended:
        seen.setdefault(layer["id"], layer)
    published_ids = [layer["id"] for layer in published]
    for layer_id, layer in seen.items():
        status = LayerStatus(
            layer_id,
            str(layer.get("title", "")),
            layer["sensitivity"],
            intended=any(i["id"] == layer_id for i in intended),
            published=layer_id in published_ids,
            advertised=layer_id in advertised,
            descriptor="-",
            tile="-",
            source=system.tile_source(layer_id)[0],
        )
        if status.published:
            descriptor, tile = system.probe_layer(layer)
            status.descriptor = _probe_text(descriptor, layer_id)
            status.tile = _probe_text(tile)
            reachable = reachable and descriptor.status is not None and tile.status is not None
        statuses.append(status)
        findings += _layer_findings(status)
    if reachable:
        for layer_id in sorted(advertised - set(published_ids)):
            findings.append(
                Finding(
                    "UI_REGISTRY_LISTING_DRIFT",
                    layer_id,
                    "/listing",
                    BLOCKING,
                    "advertised by the API but not published",
                )
            )
        for layer_id in sorted(set(published_ids) - advertised):
            findings.append(
                Finding(
                    "UI_REGISTRY_LISTING_DRIFT",
                    layer_id,
                    "/listing",
                    BLOCKING,
                    "published but not advertised by the API",
                )
            )
    else:
        findings.append(
            Finding(
                "UI_SERVICE_UNREACHABLE",
                "api",
                "/",
                HOLD,
                "the API did not answer: layers cannot be verified",
            )
        )
    return RegistryScan(
        statuses,
        sorted(set(findings)),
        published_ids,
        [layer["id"] for layer in intended],
        reachable,
    )


def _layer_findings(status: LayerStatus) -> list[Finding]:
    out = []
    where = "/tile-source"
    if status.published and status.descriptor not in ("HTTP 200", "unreachable"):
        out.append(
            Finding(
                "UI_LAYER_DESCRIPTOR_FAILED",
                status.layer_id,
                "/",
                BLOCKING,
                f"descriptor: {status.descriptor}",
            )
        )
    if status.published and status.tile not in ("HTTP 200", "unreachable"):
        out.append(
            Finding("UI_LAYER_TILE_FAILED", status.layer_id, TILE, BLOCKING, f"tile: {status.tile}")
        )
    if status.source == "missing" and (status.published or status.intended):
        out.append(
            Finding(
                "UI_LAYER_TILE_SOURCE_MISSING",
                status.layer_id,
                where,
                BLOCKING,
                "state/tiles/<layer>/source.json is missing",
            )
        )
    if status.source == "invalid" and (status.published or status.intended):
        out.append(
            Finding(
                "UI_LAYER_TILE_SOURCE_INVALID",
                status.layer_id,
                where,
                BLOCKING,
                "tile source unreadable or names another layer",
            )
        )
    return out


# --- the intended tile source -------------------------------------------------------------


def intended_tile_source(system: UiSystem, layer_id: str) -> tuple[dict[str, Any] | None, str]:
    """(source document, where it comes from) — or (None, why it cannot be restored)."""
    intended, _ = system.intended("layers")
    entry = next((layer for layer in intended if layer["id"] == layer_id), None)
    if entry is None:
        return None, f"{layer_id} is not in the intended registry"
    tiles = entry.get("tiles")
    if isinstance(tiles, dict):
        return {**tiles, "layer": layer_id}, "the intended registry entry's tile definition"
    shapes: set[str] = set()
    for other in intended:
        state, source = system.tile_source(other["id"])
        if other["id"] != layer_id and state == "present" and source is not None:
            shapes.add(
                json.dumps({k: v for k, v in source.items() if k != "layer"}, sort_keys=True)
            )
    if len(shapes) == 1:
        return {**json.loads(shapes.pop()), "layer": layer_id}, (
            "the tile-source convention every other intended layer's source shares"
        )
    return None, (
        "the intended configuration defines no tile source for it and the other "
        "sources share no single convention"
    )


# --- containment and recovery (only through run.action) -----------------------------------


def _registry_doc(system: UiSystem) -> dict[str, Any]:
    doc, problem = system.read_state("layers.json")
    if problem or not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise ValueError("the published registry (layers.json) is not readable")
    return doc


def withdraw_layer(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Take a layer out of the published registry. Idempotent; returns the undo data."""
    doc = _registry_doc(system)
    layers = doc["layers"]
    index = next(
        (i for i, x in enumerate(layers) if isinstance(x, dict) and x.get("id") == layer_id), None
    )
    if index is None:
        return {"layer": layer_id, "withdrawn": False, "reason": "not published"}
    entry = layers.pop(index)
    system.write_state("layers.json", doc)
    return {"layer": layer_id, "withdrawn": True, "index": index, "entry": entry}


def republish_layer(system: UiSystem, entry: dict[str, Any], index: int) -> dict[str, Any]:
    """Put a registry entry back at `index` (undo of withdraw). Idempotent."""
    if not valid_id(entry.get("id")):
        raise ValueError("entry has no valid layer id")
    doc = _registry_doc(system)
    layers = doc["layers"]
    if any(isinstance(x, dict) and x.get("id") == entry["id"] for x in layers):
        return {"layer": entry["id"], "republished": False, "reason": "already published"}
    position = max(0, min(int(index), len(layers)))
    layers.insert(position, entry)
    system.write_state("layers.json", doc)
    return {"layer": entry["id"], "republished": True, "index": position}


def republish_intended(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Publish the intended entry of a layer at its intended place (needs its tile source)."""
    intended, _ = system.intended("layers")
    entry = next((layer for layer in intended if layer["id"] == layer_id), None)
    if entry is None:
        raise ValueError(f"{layer_id} is not in the intended registry")
    if system.tile_source(layer_id)[0] != "present":
        raise ValueError(f"{layer_id} has no tile source: restore it first")
    published = [x.get("id") for x in _registry_doc(system)["layers"] if isinstance(x, dict)]
    index = intended_position([str(i) for i in published], [i["id"] for i in intended], layer_id)
    return republish_layer(system, entry, index)


def _sha(value: dict[str, Any]) -> str:
    """A state fingerprint persisted in undo arguments (old ledgers roll back with it):
    json.dumps(sort_keys=True), never RFC 8785 and never to change. Not a spec_hash."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def restore_tile_source(system: UiSystem, layer_id: str) -> dict[str, Any]:
    """Write the intended tile source of a layer whose source is missing. Idempotent."""
    state, current = system.tile_source(layer_id)
    if state == "present" and current is not None:
        return {
            "layer": layer_id,
            "restored": False,
            "reason": "already present",
            "sha256": _sha(current),
        }
    if state == "invalid":
        raise ValueError(f"{layer_id}: an unreadable tile source is in the way (inspect it)")
    source, origin = intended_tile_source(system, layer_id)
    if source is None:
        raise ValueError(f"{layer_id}: cannot restore: {origin}")
    system.write_tile_source(layer_id, source)
    return {"layer": layer_id, "restored": True, "from": origin, "sha256": _sha(source)}


def remove_tile_source(system: UiSystem, layer_id: str, sha256: str) -> dict[str, Any]:
    """Undo of restore: delete the source only if it is still exactly what was written."""
    state, current = system.tile_source(layer_id)
    if state != "present" or current is None:
        return {"layer": layer_id, "removed": False, "reason": "no tile source"}
    if _sha(current) != sha256:
        return {"layer": layer_id, "removed": False, "reason": "changed since it was restored"}
    folder = system.live.state_dir / "tiles" / layer_id
    (folder / "source.json").unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
    return {"layer": layer_id, "removed": True}


@undoable("ui_registry.republish_layer")
def _undo_withdraw(target: Target, entry: dict[str, Any], index: int) -> dict[str, Any]:
    return republish_layer(UiSystem.from_target(target), entry, index)


@undoable("ui_registry.withdraw_layer")
def _undo_republish(target: Target, layer_id: str) -> dict[str, Any]:
    return withdraw_layer(UiSystem.from_target(target), layer_id)


@undoable("ui_registry.remove_tile_source")
def _undo_restore_source(target: Target, layer_id: str, sha256: str) -> dict[str, Any]:
    return remove_tile_source(UiSystem.from_target(target), layer_id, sha256)


# --- recovery planning (files only: what recovery would do now) --------------------------


@dataclass
class RecoveryStep:
    kind: str  # restore-source | republish
    layer_id: str
    detail: str  # where the source comes from, or why the step cannot run
    blocked: bool = False

    @property
    def title(self) -> str:
        if self.kind == "restore-source":
            return f"Restore the tile source of {self.layer_id} from the intended configuration"
        return f"Re-publish {self.layer_id} at its intended place in the registry"


def recovery_plan(system: UiSystem) -> list[RecoveryStep]:
    """Intended layers whose tile source is missing, then intended layers not published."""
    published, _ = system.registry()
    intended, _ = system.intended("layers")
    published_ids = {layer["id"] for layer in published}
    steps: list[RecoveryStep] = []
    restorable: set[str] = set()
    for layer in intended:
        state, _ = system.tile_source(layer["id"])
        if state == "present":
            restorable.add(layer["id"])
            continue
        source, origin = intended_tile_source(system, layer["id"])
        if state == "missing" and source is not None:
            restorable.add(layer["id"])
            steps.append(RecoveryStep("restore-source", layer["id"], origin))
        else:
            reason = origin if state == "missing" else "an unreadable tile source is in the way"
            steps.append(RecoveryStep("restore-source", layer["id"], reason, blocked=True))
    for layer in intended:
        if layer["id"] not in published_ids:
            ready = layer["id"] in restorable
            steps.append(
                RecoveryStep(
                    "republish",
                    layer["id"],
                    "its tile source is (or will be) in place" if ready else "no tile source",
                    blocked=not ready,
                )
            )
    return steps
