"""The accessibility audit in real headless Chromium, on pages served from loopback.

The pages are built to separate what the audit must judge by the accessibility tree (a
labelled div with role=button passes; an unlabelled select fails) from what it must judge
by the keyboard (a named button with tabindex=-1 fails), what axe-core must report (the
unlabelled select, an image without alt text), and to prove the page cannot leave loopback
(an image on a TEST-NET address is refused, never fetched).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfm_runbooks.checks.ui import a11y as ui_a11y
from kfm_runbooks.checks.ui.base import UiSystem
from kfm_runbooks.errors import TargetError
from kfm_runbooks.sandbox.services import admin_ui
from kfm_runbooks.target import load_target

MIXED = """<!DOCTYPE html><html lang="en"><head><title>t</title></head>
<body data-release="t1"><main>
<select id="layer"><option>a</option></select>
<label for="time">Time</label> <input id="time" type="range">
<div id="play" role="button" tabindex="0" aria-label="Play timeline">&#9654;</div>
<button id="open-story" tabindex="-1">Open story</button>
<button id="ask">Ask Focus Mode</button> <button>Ask Focus Mode</button>
<img src="http://192.0.2.1/pixel.png">
</main></body></html>"""
PAGES = {"/mixed/": (200, MIXED), "/gone/": (404, "<p>not here</p>")}
CONTROLS = [
    {"key": "layer-select", "role": "combobox", "name": "Layer", "selector": "#layer"},
    {"key": "time-slider", "role": "slider", "name": "Time", "selector": "#time"},
    {"key": "play", "role": "button", "name": "Play timeline", "selector": "#play"},
    {"key": "open-story", "role": "button", "name": "Open story", "selector": "#open-story"},
    {"key": "ask", "role": "button", "name": "Ask Focus Mode", "selector": "#ask"},
]


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = PAGES.get(self.path, (404, "no"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _system(tmp_path: Path, ui: dict[str, Any], **more: Any) -> UiSystem:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "kind": "live", "ui": ui, **more}))
    return UiSystem.from_target(load_target(path))


def test_roles_names_and_tab_order_decide_not_tags(site: str, tmp_path: Path) -> None:
    system = _system(tmp_path, {"url": site + "/mixed/", "required_controls": CONTROLS})
    controls = ui_a11y.required_controls(system.svc.target)
    audit = ui_a11y.audit(system.svc, controls)
    assert audit.error is None and audit.release == "t1" and audit.engine
    by_key = {c.key: c for c in audit.controls}
    assert (by_key["play"].matches, by_key["play"].focusable) == (1, True)  # a good div
    assert (by_key["time-slider"].matches, by_key["time-slider"].focusable) == (1, True)
    assert by_key["layer-select"].matches == 0 and by_key["layer-select"].focusable
    assert (by_key["open-story"].matches, by_key["open-story"].focusable) == (1, False)
    assert by_key["ask"].matches == 2
    codes = {(f.code, f.subject) for f in ui_a11y.audit_findings(audit, controls)}
    assert {
        ("UI_A11Y_CONTROL_UNNAMED", "layer-select"),
        ("UI_A11Y_CONTROL_NOT_FOCUSABLE", "open-story"),
        ("UI_A11Y_CONTROL_AMBIGUOUS", "ask"),
        ("UI_A11Y_EXTERNAL_REQUEST_BLOCKED", "/mixed/"),
        ("UI_A11Y_VIOLATION", "select-name"),  # axe-core: the select has no label
        ("UI_A11Y_VIOLATION", "image-alt"),  # axe-core: the image has no text alternative
    } <= codes
    assert audit.blocked == ["192.0.2.1"]  # refused by the route guard, never fetched
    assert audit.tab_order[:2] == ["combobox", 'slider "Time": "50"']
    assert "Open story" not in " ".join(audit.tab_order)
    assert audit.screenshot.startswith(b"\x89PNG")


def test_a_page_that_fails_is_hold(site: str, tmp_path: Path) -> None:
    audit = ui_a11y.audit(_system(tmp_path, {"url": site + "/gone/"}).svc)
    assert audit.error == "HTTP 404"
    [finding] = ui_a11y.audit_findings(audit)
    assert (finding.code, finding.severity) == ("UI_A11Y_PAGE_UNAVAILABLE", "hold")


def test_no_browser_is_hold_and_remote_pages_are_refused(site: str, tmp_path: Path) -> None:
    system = _system(tmp_path, {"url": site + "/mixed/"})
    missing = ui_a11y.audit(system.svc, executable="/nonexistent/chromium")
    assert missing.error_code == "UI_A11Y_BROWSER_UNAVAILABLE"
    remote = ui_a11y.audit(_system(tmp_path, {"url": "http://192.0.2.1/ui/"}).svc)
    assert remote.error is not None and "remote.allow" in remote.error
    [held] = ui_a11y.audit_findings(remote)
    assert held.severity == "hold"
    nothing = ui_a11y.audit(_system(tmp_path, {}).svc)
    assert nothing.error is not None and "ui.url" in nothing.error


@pytest.mark.parametrize(
    "controls",
    ["Play", [{"role": "button"}], [{"role": "button", "name": ""}], [{"name": "x", "role": 3}]],
)
def test_malformed_required_controls_are_bad_input(tmp_path: Path, controls: Any) -> None:
    system = _system(tmp_path, {"url": "http://127.0.0.1:9/", "required_controls": controls})
    with pytest.raises(TargetError, match="required_controls"):
        ui_a11y.required_controls(system.svc.target)


@pytest.mark.parametrize("key", ["layer_registry", "stories", "citations"])
def test_a_reference_file_that_does_not_exist_is_bad_input(tmp_path: Path, key: str) -> None:
    with pytest.raises(TargetError, match=f"ui.{key}"):
        _system(tmp_path, {"url": "http://127.0.0.1:9/", key: "nowhere/layers.json"})
    (tmp_path / "folder").mkdir()
    with pytest.raises(TargetError, match=f"ui.{key}"):
        _system(tmp_path, {"url": "http://127.0.0.1:9/", key: "folder"})


def test_the_release_is_compared_only_when_the_target_names_it(tmp_path: Path) -> None:
    audit = ui_a11y.Audit("/", release="v3")
    assert ui_a11y.release_findings(_system(tmp_path, {"url": "http://127.0.0.1:9/"}), audit) == []
    named = _system(tmp_path, {"url": "http://127.0.0.1:9/", "release": "v2"})
    [found] = ui_a11y.release_findings(named, audit)
    assert found.code == "UI_RELEASE_NOT_INTENDED" and "v3" in found.message


def _ui_state(folder: Path) -> Any:
    import json

    return json.loads((folder / "live/state/ui.json").read_text())


def test_release_rollback_and_roll_forward_through_the_admin_command(sandbox: Path) -> None:
    folder = sandbox.parent
    admin_ui._write(folder, "ui.json", {"release": "v3", "previous": "v2"})
    system = UiSystem.from_target(load_target(sandbox))
    assert system.can_act()
    done = ui_a11y.rollback_release(system)  # the sandbox's admin command, as a target names it
    assert done == {
        "rolled_back": True,
        "release": "v2",
        "from": "v3",
        "before": {"release": "v3", "previous": "v2"},
    }
    assert _ui_state(folder) == {"release": "v2", "previous": "v1", "rolled_back_from": "v3"}
    assert ui_a11y.rollback_release(system)["release"] == "v1"  # previous is v1 now
    assert ui_a11y.restore_release(system, done["before"], "v2")["restored"] is False
    admin_ui._write(
        folder, "ui.json", {"release": "v2", "previous": "v1", "rolled_back_from": "v3"}
    )
    assert ui_a11y.restore_release(system, done["before"], "v2") == {
        "restored": True,
        "release": "v3",
    }
    assert ui_a11y.restore_release(system, done["before"], "v2")["restored"] is False


def test_no_previous_release_cannot_roll_back(sandbox: Path) -> None:
    folder = sandbox.parent
    admin_ui._write(folder, "ui.json", {"release": "v3"})
    system = UiSystem.from_target(load_target(sandbox))
    with pytest.raises(TargetError, match="no previous release"):
        ui_a11y.rollback_release(system)
