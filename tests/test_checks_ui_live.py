"""The ui checks against the real sandbox API process: registry, timeline, stories.

The checks see the sandbox only as its target describes it (api.url, the ui section's
reference files, admin.command). Each test breaks the running system the way a bad deploy
would (editing the state the sandbox API serves, or applying a sandbox fault), checks what
the scan reports, exercises the repair through the sandbox's admin command and its undo,
and leaves the state as intended (autouse reset).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks import Finding
from kfm_runbooks.checks.ui import registry as ui_registry
from kfm_runbooks.checks.ui import stories as ui_stories
from kfm_runbooks.checks.ui import timeline as ui_timeline
from kfm_runbooks.checks.ui.base import MAX_REFERENCE_BYTES, UiSystem
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


def _folder(system: UiSystem) -> Path:
    return system.svc.target.path.parent


def _codes(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.code, f.subject) for f in findings}


def _edit(system: UiSystem, name: str, change) -> None:  # type: ignore[no-untyped-def]
    """A bad deploy: change what the sandbox API serves (its state), not the reference."""
    path = _folder(system) / "live" / "state" / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _edit_reference(system: UiSystem, name: str, change) -> None:  # type: ignore[no-untyped-def]
    path = _folder(system) / "live" / "reference" / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# --- layer registry --------------------------------------------------------------------------


def test_the_intended_system_is_clean(system: UiSystem) -> None:
    scan = ui_registry.scan(system)
    assert scan.findings == [] and scan.reachable
    assert (
        scan.published_ids
        == scan.intended_ids
        == ["landcover-2021", "streams", "drought-monitor", "wells-precise"]
    )  # the restricted layer is seen through the analyst role (ui.read_roles)
    assert ui_timeline.scan(system).findings == []
    assert ui_stories.scan(system).findings == []
    assert ui_registry.recovery_plan(scan) == []


def test_the_checks_read_no_sandbox_file(system: UiSystem) -> None:
    """The reference is the files the target names: config.json and state are not read."""
    live = _folder(system) / "live"
    (live / "config.json").write_text("{broken")
    _edit_reference(system, "layers.json", lambda d: d["layers"].pop(1))
    codes = _codes(ui_registry.scan(system).findings)
    assert codes == {("UI_REGISTRY_LAYER_UNEXPECTED", "streams")}


def test_missing_tiles_withdraw_restore_publish_and_undo(system: UiSystem) -> None:
    set_fault(_folder(system), "layer-registry-mismatch", True)
    scan = ui_registry.scan(system)
    assert _codes(scan.findings) == {("UI_LAYER_TILE_FAILED", "streams")}
    assert [s.layer_id for s in scan.unloadable()] == ["streams"]
    assert [(s.kind, s.layer_id) for s in ui_registry.recovery_plan(scan)] == [
        ("restore-tiles", "streams")
    ]

    withdrawn = ui_registry.withdraw_layer(system, "streams")
    assert withdrawn["index"] == 1 and withdrawn["withdrawn"]
    assert ui_registry.withdraw_layer(system, "streams")["withdrawn"] is False  # idempotent
    after = ui_registry.scan(system)
    assert _codes(after.findings) == {("UI_REGISTRY_LAYER_MISSING", "streams")}
    assert [(s.kind, s.layer_id) for s in ui_registry.recovery_plan(after, {"streams"})] == [
        ("restore-tiles", "streams"),
        ("publish", "streams"),
    ]
    restored = ui_registry.restore_tiles(system, "streams")
    assert restored["restored"]
    assert ui_registry.restore_tiles(system, "streams")["restored"] is False
    published = ui_registry.publish_intended(system, "streams")
    assert (published["republished"], published["index"]) == (True, 1)
    assert ui_registry.scan(system).findings == []

    # undo, newest first, brings the fault back exactly
    assert ui_registry.withdraw_layer(system, "streams")["withdrawn"]
    undo = system.admin(
        "ui.remove_tile_source", {"layer_id": "streams", "sha256": restored["sha256"]}
    )
    assert undo["removed"]
    assert ui_registry.republish_layer(system, withdrawn["entry"], withdrawn["index"])[
        "republished"
    ]
    assert _codes(ui_registry.scan(system).findings) == _codes(scan.findings)


def test_registry_drift_and_hostile_entries(system: UiSystem) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["layers"][0]["title"] = "Land cover (renamed)"
        doc["layers"][1], doc["layers"][2] = doc["layers"][2], doc["layers"][1]
        doc["layers"].append({"id": "../../etc", "sensitivity": "public"})
        doc["layers"].append(dict(doc["layers"][0]))
        doc["layers"].append({"id": "extra-layer", "sensitivity": "public", "title": "x"})

    _edit(system, "layers.json", change)
    codes = _codes(ui_registry.scan(system).findings)
    assert ("UI_REGISTRY_LAYER_DRIFT", "landcover-2021") in codes
    assert ("UI_REGISTRY_ORDER_DRIFT", "layers") in codes
    assert ("UI_LAYER_ID_INVALID", "/api/v1/layers") in codes
    assert ("UI_REGISTRY_DUPLICATE_ID", "/api/v1/layers") in codes
    assert ("UI_REGISTRY_LAYER_UNEXPECTED", "extra-layer") in codes
    assert ("UI_LAYER_TILE_FAILED", "extra-layer") in codes  # published without tiles


def test_a_target_without_a_reference_is_hold_never_pass(system: UiSystem, tmp_path: Path) -> None:
    text = system.svc.target.path.read_text().replace("layer_registry:", "unused_registry:")
    bare = system.svc.target.path.with_name("bare.target.yaml")
    bare.write_text(text)
    scan = ui_registry.scan(UiSystem.from_target(load_target(bare)))
    assert [(f.code, f.severity) for f in scan.findings] == [("UI_REFERENCE_MISSING", "hold")]
    assert scan.intended_ids is None and ui_registry.recovery_plan(scan) == []


def test_an_api_that_does_not_answer_is_hold(system: UiSystem) -> None:
    path = system.svc.target.path
    elsewhere = path.with_name("down.target.yaml")
    text = path.read_text()
    url = system.svc.url("api")
    elsewhere.write_text(text.replace(url, "http://127.0.0.1:9"))
    down = UiSystem.from_target(load_target(elsewhere))
    scan = ui_registry.scan(down)
    assert not scan.reachable and scan.unloadable() == []
    assert ("UI_SERVICE_UNREACHABLE", "api") in _codes(scan.findings)
    assert ui_timeline.scan(down).reachable is False
    assert ui_stories.scan(down).reachable is False


def test_a_remote_api_not_allowed_is_refused_before_any_request(system: UiSystem) -> None:
    path = system.svc.target.path
    remote = path.with_name("remote.target.yaml")
    remote.write_text(path.read_text().replace(system.svc.url("api"), "http://kfm.example.org"))
    scan = ui_registry.scan(UiSystem.from_target(load_target(remote)))
    [held] = [f for f in scan.findings if f.code == "UI_SERVICE_UNREACHABLE"]
    assert "remote.allow" in held.message


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
    set_fault(_folder(system), "timeline-desync", True)
    scan = ui_timeline.scan(system)
    assert {f.code for f in scan.findings} == {
        "UI_TIME_STEPS_MISSING",
        "UI_TIME_STEPS_UNEXPECTED",
        "UI_TIME_ORDER_MISMATCH",
        "UI_TIME_STEP_IRREGULAR",
        "UI_STORY_TIME_NOT_SERVED",
    }
    assert scan.declared_by == "ui.layer_registry"
    assert [t.layer_id for t in scan.desynced()] == ["drought-monitor"]
    done = ui_timeline.regenerate_time_index(system, "drought-monitor")
    assert done["regenerated"]
    assert ui_timeline.regenerate_time_index(system, "drought-monitor")["regenerated"] is False
    assert ui_timeline.scan(system).findings == []
    undone = ui_timeline.restore_time_index(
        system, "drought-monitor", done["previous"], done["sha256"]
    )
    assert undone["restored"]
    assert {f.code for f in ui_timeline.scan(system).findings} == {f.code for f in scan.findings}
    # an index changed since the regeneration is not overwritten by the undo
    assert not ui_timeline.restore_time_index(
        system, "drought-monitor", {"values": []}, done["sha256"]
    )["restored"]


def test_an_incoherent_registry_is_not_regenerated_from(system: UiSystem) -> None:
    _edit_reference(system, "layers.json", lambda d: d["layers"][2]["time"].update(step="P2M"))
    assert {f.code for f in ui_timeline.scan(system).findings} == {
        "UI_TIME_REGISTRY_INCOHERENT",
        "UI_TIME_STEP_IRREGULAR",
    }  # served monthly, declared P2M
    with pytest.raises(ValueError, match="incoherent"):
        ui_timeline.regenerate_time_index(system, "drought-monitor")


# --- stories -----------------------------------------------------------------------------------


def test_broken_node_unpublish_restore_and_undo(system: UiSystem) -> None:
    set_fault(_folder(system), "broken-story-node", True)
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
    # a document of ui.citations is a valid citation even though it is no catalog item
    assert "kfm-sbx-drought-monitor" not in (scan.context.catalog or set())


def test_whole_story_withdraw_and_blocked_recovery(system: UiSystem) -> None:
    withdrawn = ui_stories.withdraw_story(system, "drought-2026")
    _edit_reference(
        system, "stories.json", lambda d: d["stories"][0]["nodes"][0].update(layer="no-such-layer")
    )
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
def test_a_reference_that_is_not_a_small_regular_file_is_held(system: UiSystem, kind: str) -> None:
    path = _folder(system) / "live" / "reference" / "layers.json"
    honest = path.read_bytes()
    try:
        hostile.plant(path, kind, honest, MAX_REFERENCE_BYTES)
        scan = ui_registry.scan(system)
        held = [f for f in scan.findings if f.severity == "hold"]
        assert [(f.code, f.subject) for f in held] == [
            ("UI_REFERENCE_UNREADABLE", "ui.layer_registry")
        ]
        assert scan.intended_ids is None
    finally:
        path.unlink()
        path.write_bytes(honest)
