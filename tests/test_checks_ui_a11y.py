"""The accessibility audit in real headless Chromium, on pages served from loopback.

The pages are built to separate what the audit must judge by the accessibility tree (a
labelled div with role=button passes; an unlabelled select fails) from what it must judge
by the keyboard (a named button with tabindex=-1 fails), and to prove the page cannot leave
loopback (an image on a TEST-NET address is refused, never fetched).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.ui import a11y as ui_a11y
from kfm_runbooks.checks.ui.base import UiSystem
from kfm_runbooks.target import load_target

MIXED = """<!DOCTYPE html><html lang="en"><head><title>t</title></head>
<body data-release="t1"><main>
<select id="layer"><option>a</option></select>
<label for="time">Time</label> <input id="time" type="range">
<div id="play" role="button" tabindex="0" aria-label="Play timeline">&#9654;</div>
<button id="open-story" tabindex="-1">Open story</button>
<button id="ask">Ask Focus Mode</button> <button>Ask Focus Mode</button>
<img src="http://192.0.2.1/pixel.png" alt="">
</main></body></html>"""
PAGES = {"/mixed/": (200, MIXED), "/gone/": (404, "<p>not here</p>")}


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


def test_roles_names_and_tab_order_decide_not_tags(site: str) -> None:
    audit = ui_a11y.audit(site + "/mixed/")
    assert audit.error is None and audit.release == "t1"
    by_key = {c.key: c for c in audit.controls}
    assert (by_key["play"].matches, by_key["play"].focusable) == (1, True)  # a good div
    assert (by_key["time-slider"].matches, by_key["time-slider"].focusable) == (1, True)
    assert by_key["layer-select"].matches == 0 and by_key["layer-select"].focusable
    assert (by_key["open-story"].matches, by_key["open-story"].focusable) == (1, False)
    assert by_key["ask"].matches == 2
    codes = {(f.code, f.subject) for f in ui_a11y.audit_findings(audit)}
    assert codes == {
        ("UI_A11Y_CONTROL_UNNAMED", "layer-select"),
        ("UI_A11Y_CONTROL_NOT_FOCUSABLE", "open-story"),
        ("UI_A11Y_CONTROL_AMBIGUOUS", "ask"),
        ("UI_A11Y_EXTERNAL_REQUEST_BLOCKED", "/mixed/"),
    }
    assert audit.blocked == ["192.0.2.1"]  # refused by the route guard, never fetched
    assert audit.tab_order[:2] == ["combobox", 'slider "Time": "50"']
    assert "Open story" not in " ".join(audit.tab_order)
    assert audit.screenshot.startswith(b"\x89PNG")


def test_a_page_that_fails_is_hold(site: str) -> None:
    audit = ui_a11y.audit(site + "/gone/")
    assert audit.error == "HTTP 404"
    [finding] = ui_a11y.audit_findings(audit)
    assert (finding.code, finding.severity) == ("UI_A11Y_PAGE_UNAVAILABLE", "hold")


def test_no_browser_is_hold_and_remote_pages_are_refused(site: str) -> None:
    missing = ui_a11y.audit(site + "/mixed/", executable="/nonexistent/chromium")
    assert missing.error_code == "UI_A11Y_BROWSER_UNAVAILABLE"
    remote = ui_a11y.audit("http://192.0.2.1/ui/")
    assert remote.error == "refusing to open 192.0.2.1: loopback only"


def test_release_rollback_and_roll_forward(sandbox: Path) -> None:
    system = UiSystem.from_target(load_target(sandbox))
    system.write_state("ui.json", {"release": "v3", "previous": "v2"})
    assert [f.code for f in ui_a11y.release_findings(system)] == ["UI_RELEASE_NOT_INTENDED"]
    done = ui_a11y.rollback_release(system)
    assert done == {
        "rolled_back": True,
        "release": "v2",
        "from": "v3",
        "before": {"release": "v3", "previous": "v2"},
    }
    assert system.live.read_state("ui.json") == {
        "release": "v2",
        "previous": "v1",
        "rolled_back_from": "v3",
    }
    assert ui_a11y.release_findings(system) == []
    assert ui_a11y.rollback_release(system)["release"] == "v1"  # previous is v1 now
    assert ui_a11y.restore_release(system, done["before"], "v2")["restored"] is False
    system.write_state("ui.json", {"release": "v2", "previous": "v1", "rolled_back_from": "v3"})
    assert ui_a11y.restore_release(system, done["before"], "v2") == {
        "restored": True,
        "release": "v3",
    }
    assert ui_a11y.restore_release(system, done["before"], "v2")["restored"] is False


def test_no_previous_release_cannot_roll_back(sandbox: Path) -> None:
    system = UiSystem.from_target(load_target(sandbox))
    system.write_state("ui.json", {"release": "v3"})
    with pytest.raises(ValueError, match="no previous release"):
        ui_a11y.rollback_release(system)
    (system.live.state_dir / "ui.json").write_text("[1, 2")
    assert [f.code for f in ui_a11y.release_findings(system)] == ["UI_STATE_UNREADABLE"]
    json.loads((system.live.config_path).read_text())  # the reference is untouched
