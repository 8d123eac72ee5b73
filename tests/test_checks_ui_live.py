"""The ui checks against the real sandbox API process: registry, timeline, stories.

Each test breaks the running system's state the way a bad deploy would (or as the sandbox
faults do), checks what the scan reports, exercises the repair and its undo, and leaves the
state as intended (autouse reset).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks import Finding
from kfm_runbooks.checks.live import MAX_STATE_BYTES
from kfm_runbooks.checks.ui import registry as ui_registry
from kfm_runbooks.checks.ui import stories as ui_stories
from kfm_runbooks.checks.ui import timeline as ui_timeline
from kfm_runbooks.checks.ui.base import UiSystem
from kfm_runbooks.checks.ui.story_html import NodeView, check_html, render_story
from kfm_runbooks.sandbox.services.faults import set_fault
from kfm_runbooks.target import load_target

from . import hostile
from .ui_api import api_only, reset_state


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with api_only(tmp_path_factory.mktemp("ui") / "sandbox") as target:
        yield target


@pytest.fixture
def system(api: Path) -> Iterator[UiSystem]:
    yield UiSystem.from_target(load_target(api))
    reset_state(api.parent)


def _codes(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.code, f.subject) for f in findings}


def _edit(system: UiSystem, name: str, change) -> None:  # type: ignore[no-untyped-def]
    doc = system.live.read_state(name)
    change(doc)
    system.write_state(name, doc)


# --- layer registry --------------------------------------------------------------------------


def test_the_intended_system_is_clean(system: UiSystem) -> None:
    assert ui_registry.scan(system).findings == []
    assert ui_timeline.scan(system).findings == []
    assert ui_stories.scan(system).findings == []
    assert ui_registry.recovery_plan(system) == []


def test_missing_tile_source_withdraw_restore_republish_and_undo(system: UiSystem) -> None:
    set_fault(system.live.state_dir.parent.parent, "layer-registry-mismatch", True)
    scan = ui_registry.scan(system)
    assert _codes(scan.findings) == {
        ("UI_LAYER_TILE_FAILED", "streams"),
        ("UI_LAYER_TILE_SOURCE_MISSING", "streams"),
    }
    assert [s.layer_id for s in scan.unloadable()] == ["streams"]

    withdrawn = ui_registry.withdraw_layer(system, "streams")
    assert withdrawn["index"] == 1 and withdrawn["withdrawn"]
    assert ui_registry.withdraw_layer(system, "streams")["withdrawn"] is False  # idempotent
    after = ui_registry.scan(system)
    assert ("UI_REGISTRY_LAYER_MISSING", "streams") in _codes(after.findings)
    # the API lists what the registry publishes: a withdrawn layer leaves the listing too
    assert ("UI_REGISTRY_LISTING_DRIFT", "streams") not in _codes(after.findings)
    assert [(s.kind, s.blocked) for s in ui_registry.recovery_plan(system)] == [
        ("restore-source", False),
        ("republish", False),
    ]

    restored = ui_registry.restore_tile_source(system, "streams")
    assert restored["restored"] and "convention" in restored["from"]
    assert ui_registry.restore_tile_source(system, "streams")["restored"] is False
    assert ui_registry.republish_intended(system, "streams") == {
        "layer": "streams",
        "republished": True,
        "index": 1,
    }
    assert ui_registry.scan(system).findings == []

    # undo, newest first, brings the fault back exactly
    assert ui_registry.withdraw_layer(system, "streams")["withdrawn"]
    assert ui_registry.remove_tile_source(system, "streams", restored["sha256"])["removed"]
    assert ui_registry.republish_layer(system, withdrawn["entry"], withdrawn["index"])[
        "republished"
    ]
    assert _codes(ui_registry.scan(system).findings) == _codes(scan.findings)


def test_intended_tiles_definition_wins_and_no_convention_blocks(system: UiSystem) -> None:
    config = system.live.config_path
    reference = json.loads(config.read_text())
    reference["layers"][1]["tiles"] = {"format": "pmtiles", "zooms": [2, 9]}
    config.write_text(json.dumps(reference))
    source, origin = ui_registry.intended_tile_source(system, "streams")
    assert source == {"format": "pmtiles", "zooms": [2, 9], "layer": "streams"}
    assert "intended registry entry" in origin

    del reference["layers"][1]["tiles"]
    config.write_text(json.dumps(reference))
    system.write_tile_source("landcover-2021", {"layer": "landcover-2021", "format": "png"})
    shutil.rmtree(system.live.state_dir / "tiles" / "streams")
    assert ui_registry.intended_tile_source(system, "streams")[0] is None
    step = next(s for s in ui_registry.recovery_plan(system) if s.layer_id == "streams")
    assert step.blocked
    with pytest.raises(ValueError, match="cannot restore"):
        ui_registry.restore_tile_source(system, "streams")


def test_a_changed_restored_source_is_not_removed(system: UiSystem) -> None:
    shutil.rmtree(system.live.state_dir / "tiles" / "streams")
    restored = ui_registry.restore_tile_source(system, "streams")
    system.write_tile_source("streams", {"layer": "streams", "format": "edited"})
    assert ui_registry.remove_tile_source(system, "streams", restored["sha256"])["removed"] is False


def test_registry_drift_and_hostile_entries(system: UiSystem) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["layers"][0]["title"] = "Land cover (renamed)"
        doc["layers"][2], doc["layers"][3] = doc["layers"][3], doc["layers"][2]
        doc["layers"].append({"id": "../../etc", "sensitivity": "public"})
        doc["layers"].append(dict(doc["layers"][0]))
        doc["layers"].append({"id": "extra-layer", "sensitivity": "public", "title": "x"})

    _edit(system, "layers.json", change)
    codes = _codes(ui_registry.scan(system).findings)
    assert ("UI_REGISTRY_LAYER_DRIFT", "landcover-2021") in codes
    assert ("UI_REGISTRY_ORDER_DRIFT", "layers.json") in codes
    assert ("UI_LAYER_ID_INVALID", "state/layers.json") in codes
    assert ("UI_REGISTRY_DUPLICATE_ID", "state/layers.json") in codes
    assert ("UI_REGISTRY_LAYER_UNEXPECTED", "extra-layer") in codes
    assert ("UI_LAYER_TILE_FAILED", "extra-layer") in codes  # published without a tile source
    assert ("UI_LAYER_TILE_SOURCE_MISSING", "extra-layer") in codes


def test_malformed_state_is_a_finding_not_a_crash(system: UiSystem) -> None:
    (system.live.state_dir / "layers.json").write_text("{broken")
    (system.live.state_dir / "stories.json").write_text('{"stories": 3}')
    scan = ui_registry.scan(system)
    assert ("UI_STATE_UNREADABLE", "state/layers.json") in _codes(scan.findings)
    stories = ui_stories.scan(system)
    assert ("UI_STATE_UNREADABLE", "state/stories.json") in _codes(stories.findings)
    with pytest.raises(ValueError, match="not readable"):
        ui_registry.withdraw_layer(system, "streams")


def test_an_api_that_does_not_answer_is_hold(system: UiSystem, tmp_path: Path) -> None:
    services = system.live.services_path
    original = services.read_text()
    services.write_text(json.dumps({"api": {"url": "http://127.0.0.1:9"}}))
    try:
        scan = ui_registry.scan(system)
        assert not scan.reachable and scan.unloadable() == []
        assert ("UI_SERVICE_UNREACHABLE", "api") in _codes(scan.findings)
        assert ui_timeline.scan(system).reachable is False
    finally:
        services.write_text(original)


# --- timeline ----------------------------------------------------------------------------------


def test_add_step_and_label() -> None:
    jan31 = datetime(2024, 1, 31, tzinfo=UTC)
    assert ui_timeline.add_step(jan31, "P1M") == datetime(2024, 2, 29, tzinfo=UTC)
    assert ui_timeline.add_step(jan31, "P1Y2M") == datetime(2025, 3, 31, tzinfo=UTC)
    assert ui_timeline.add_step(jan31, "PT6H") == datetime(2024, 1, 31, 6, tzinfo=UTC)
    assert ui_timeline.add_step(jan31, "P") is None
    assert ui_timeline.add_step(jan31, "1M") is None
    assert ui_timeline.label("2026-04-01T00:00:00Z") == "2026-04-01"
    assert ui_timeline.label("2026-04-01T06:00:00Z") == "2026-04-01T06:00:00+00:00"
    assert ui_timeline.instant("2026-04-01T00:00:00") is None  # naive: not an instant


def test_registry_extent_must_be_coherent() -> None:
    layer: dict[str, Any] = {
        "id": "x",
        "time": {
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-03-01T00:00:00Z",
            "step": "P1M",
            "values": ["2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"],
        },
    }
    _, _, found = ui_timeline.registry_findings(layer)
    assert [f.message for f in found] == ["1 gap(s) differ from step P1M"]
    layer["time"]["values"] = ["2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z"]
    messages = {f.message for f in ui_timeline.registry_findings(layer)[2]}
    assert (
        "values not strictly ascending" in messages and "start is not the first value" in messages
    )


def test_compare_catches_duplicates_and_garbage() -> None:
    registry = ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"]
    found = ui_timeline.compare(
        "x", registry, "P1M", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "soon", 7]
    )
    assert {f.code for f in found} == {
        "UI_TIME_VALUE_INVALID",
        "UI_TIME_STEPS_MISSING",
        "UI_TIME_DUPLICATE",
    }
    assert ui_timeline.compare("x", registry, "P1M", list(registry)) == []


def test_desync_regenerate_and_undo(system: UiSystem) -> None:
    set_fault(system.live.state_dir.parent.parent, "timeline-desync", True)
    scan = ui_timeline.scan(system)
    assert {f.code for f in scan.findings} == {
        "UI_TIME_STEPS_MISSING",
        "UI_TIME_STEPS_UNEXPECTED",
        "UI_TIME_ORDER_MISMATCH",
        "UI_TIME_STEP_IRREGULAR",
        "UI_STORY_TIME_NOT_SERVED",
    }
    assert [t.layer_id for t in scan.desynced()] == ["drought-monitor"]
    done = ui_timeline.regenerate_time_index(system, "drought-monitor")
    assert done["regenerated"] and done["steps"] == 6
    assert ui_timeline.regenerate_time_index(system, "drought-monitor")["regenerated"] is False
    assert ui_timeline.scan(system).findings == []
    undone = ui_timeline.restore_time_index(
        system, "drought-monitor", done["previous"], done["sha256"]
    )
    assert undone["restored"]
    assert {f.code for f in ui_timeline.scan(system).findings} == {f.code for f in scan.findings}
    # a file changed since the regeneration is not overwritten by the undo
    assert not ui_timeline.restore_time_index(
        system, "drought-monitor", {"values": []}, done["sha256"]
    )["restored"]


def test_an_incoherent_registry_is_not_regenerated_from(system: UiSystem) -> None:
    _edit(system, "layers.json", lambda d: d["layers"][2]["time"].update(step="P2M"))
    assert {f.code for f in ui_timeline.scan(system).findings} == {
        "UI_TIME_REGISTRY_INCOHERENT",
        "UI_TIME_STEP_IRREGULAR",
    }  # served monthly, declared P2M
    with pytest.raises(ValueError, match="incoherent"):
        ui_timeline.regenerate_time_index(system, "drought-monitor")


# --- stories -----------------------------------------------------------------------------------


def test_broken_node_unpublish_restore_and_undo(system: UiSystem) -> None:
    set_fault(system.live.state_dir.parent.parent, "broken-story-node", True)
    scan = ui_stories.scan(system)
    assert _codes(scan.findings) == {("UI_STORY_LAYER_MISSING", "drought-2026/spring")}
    assert scan.containment() == [("drought-2026", "spring")]
    [step] = ui_stories.plan_recovery(scan)
    assert (step.kind, step.layer, step.blocked) == ("set-layer", "drought-monitor", None)

    withdrawn = ui_stories.withdraw_node(system, "drought-2026", "spring")
    assert ui_stories.withdraw_node(system, "drought-2026", "spring")["withdrawn"] is False
    after = ui_stories.scan(system)
    assert _codes(after.findings) == {("UI_STORY_NODE_UNPUBLISHED", "drought-2026/spring")}
    [step] = ui_stories.plan_recovery(after, {"drought-2026/spring": withdrawn["entry"]})
    assert (step.kind, step.index, step.entry["layer"]) == ("republish-node", 1, "drought-monitor")
    assert ui_stories.republish_node(system, "drought-2026", step.index, step.entry)["republished"]
    assert ui_stories.scan(system).findings == []
    reference = json.loads(system.live.config_path.read_text())["stories"]
    assert system.live.read_state("stories.json") == {"stories": reference}

    assert ui_stories.withdraw_node(system, "drought-2026", "spring")["withdrawn"]
    assert ui_stories.republish_node(
        system, "drought-2026", withdrawn["index"], withdrawn["entry"]
    )["republished"]
    assert _codes(ui_stories.scan(system).findings) == _codes(scan.findings)


def test_node_causes_citations_text_time(system: UiSystem) -> None:
    def change(doc: dict[str, Any]) -> None:
        intro, spring, summer = doc["stories"][0]["nodes"]
        intro["citations"] = ["kfm-sbx-nowhere"]
        spring["time"] = "2026-04-15T00:00:00Z"
        summer["text"] = "Streams <script>alert(1)</script> low."

    _edit(system, "stories.json", change)
    scan = ui_stories.scan(system)
    assert _codes(scan.findings) == {
        ("UI_STORY_CITATION_UNRESOLVED", "drought-2026/intro"),
        ("UI_STORY_TIME_NOT_SERVED", "drought-2026/spring"),
        ("UI_STORY_TEXT_MARKUP", "drought-2026/summer"),
    }
    # every node is broken: containment takes the whole story down
    assert scan.containment() == [("drought-2026", None)]
    assert "<script>" not in scan.pages["drought-2026"]
    # a corpus document is a valid citation even though it is no catalog item
    assert "kfm-sbx-drought-monitor" not in (scan.context.catalog or set())


def test_whole_story_withdraw_and_blocked_recovery(system: UiSystem) -> None:
    withdrawn = ui_stories.withdraw_story(system, "drought-2026")
    config = system.live.config_path
    reference = json.loads(config.read_text())
    reference["stories"][0]["nodes"][0]["layer"] = "no-such-layer"
    config.write_text(json.dumps(reference))
    scan = ui_stories.scan(system)
    assert ("UI_STORY_UNPUBLISHED", "drought-2026") in _codes(scan.findings)
    [step] = ui_stories.plan_recovery(scan, {"drought-2026": withdrawn["entry"]})
    assert step.kind == "republish-story" and "no-such-layer" in str(step.blocked)
    assert ui_stories.republish_story(system, withdrawn["index"], withdrawn["entry"])["republished"]
    assert ui_stories.republish_story(system, 0, withdrawn["entry"])["republished"] is False


def test_the_html_checker_can_fail() -> None:
    node = NodeView("a", "Layer", None, "Some text.", ["c1"])
    page = render_story("s", "Story", [node])
    assert check_html(page, [node]) == ([], {"a": []})
    hostile = page.replace("</ul>", '</ul><img src=x onerror="alert(1)"><script>x()</script>')
    problems, _ = check_html(hostile, [node])
    assert "active attribute onerror" in problems and "active content <script>" in problems
    _, per_node = check_html(page.replace("Some text.", "Other text."), [node])
    assert per_node["a"] == ["text does not survive rendering"]
    problems, per_node = check_html(page.replace("</section>", ""), [node])
    assert any(p.startswith("unbalanced") or p.startswith("unclosed") for p in problems)
    _, per_node = check_html(page.replace('id="node-a"', 'id="node-b"'), [node])
    assert per_node["a"] == ["no rendered section"]


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_state_or_reference_that_is_not_a_small_regular_file_is_held(
    system: UiSystem, kind: str
) -> None:
    layers = system.live.state_dir / "layers.json"
    config = system.live.config_path
    saved = {path: path.read_bytes() for path in (layers, config)}
    try:
        for path, honest in saved.items():
            hostile.plant(path, kind, honest, MAX_STATE_BYTES)
        scan = ui_registry.scan(system)
        assert ("UI_STATE_UNREADABLE", "state/layers.json") in _codes(scan.findings)
        reference, problem = system.reference()
        assert reference == {} and problem is not None
        assert (problem.code, problem.severity) == ("UI_STATE_UNREADABLE", "hold")
    finally:
        for path, honest in saved.items():
            path.unlink()
            path.write_bytes(honest)
