"""The four ui runbooks through the CLI, papermill and the real project kernel, against the
running sandbox (API on loopback; PostgreSQL started by the shared fixture, unused here).

Per runbook: its fault on -> triage finds it and the run exits 1; --apply fixes it (exit 0);
a second --apply changes nothing; rolling every applied action back (newest first) brings
the fault back. Without faults every runbook passes; on KFM's layer contract fixtures the
registry runbook reaches every verdict KFM states (these two read-only verdicts are read
from the golden of the same case: `golden_run`).

The runs are real `kfm-runbook` processes. To keep the module's wall time down, flows whose
faults do not touch each other's state run side by side (two lanes); flows that would see
each other's faults never overlap. The fixture leaves the sandbox as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from kfm_runbooks import ledger
from kfm_runbooks.checks.ui import a11y as ui_a11y
from kfm_runbooks.checks.ui import registry as ui_registry
from kfm_runbooks.checks.ui import stories as ui_stories
from kfm_runbooks.checks.ui import timeline as ui_timeline
from kfm_runbooks.checks.ui.base import UiSystem
from kfm_runbooks.sandbox.parts import live as live_part
from kfm_runbooks.sandbox.services import supervisor
from kfm_runbooks.target import load_target

from .conftest import KFM_BIN
from .helpers import assert_pass_coverage, golden_run

pytestmark = pytest.mark.slow

REGISTRY = "RBK-ui-layer-registry-mismatch"
TIMELINE = "RBK-ui-timeline-desync"
STORIES = "RBK-ui-story-node-render"
A11Y = "RBK-ui-accessibility-regression"


def _registry_broken(system: UiSystem) -> bool:
    return bool(ui_registry.scan(system).with_codes(ui_registry.LOAD_CODES))


def _timeline_broken(system: UiSystem) -> bool:
    return bool(ui_timeline.scan(system).desynced())


def _story_broken(system: UiSystem) -> bool:
    return any(not node.ok for node in ui_stories.scan(system).nodes)


def _ui_broken(system: UiSystem) -> bool:
    controls = ui_a11y.required_controls(system.svc.target)
    page = ui_a11y.audit(system.svc, controls)
    found = ui_a11y.audit_findings(page, controls)
    return bool([f for f in found if f.code in ui_a11y.A11Y_CODES])


@dataclass(frozen=True)
class Case:
    fault: str
    codes: list[str]
    actions: int
    broken: Callable[[UiSystem], bool]


CASES = {
    REGISTRY: Case(
        "layer-registry-mismatch",
        ["UI_LAYER_TILE_FAILED"],
        3,  # withdraw, restore the tiles, re-publish (through the sandbox's admin command)
        _registry_broken,
    ),
    TIMELINE: Case(
        "timeline-desync",
        [
            "UI_STORY_TIME_NOT_SERVED",
            "UI_TIME_ORDER_MISMATCH",
            "UI_TIME_STEPS_MISSING",
            "UI_TIME_STEPS_UNEXPECTED",
            "UI_TIME_STEP_IRREGULAR",
        ],
        1,  # regenerate the time index
        _timeline_broken,
    ),
    STORIES: Case(
        "broken-story-node",
        ["UI_STORY_LAYER_MISSING"],
        2,  # unpublish the node, re-publish it with its intended layer
        _story_broken,
    ),
    A11Y: Case(
        "inaccessible-control",
        ["UI_A11Y_CONTROL_NOT_FOCUSABLE", "UI_A11Y_CONTROL_UNNAMED", "UI_RELEASE_NOT_INTENDED"],
        1,  # roll the UI release back
        _ui_broken,
    ),
}


@dataclass
class Flow:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> run --json (+exit)
    codes: dict[str, list[str]] = field(default_factory=dict)
    actions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    broken: dict[str, bool] = field(default_factory=dict)
    rollbacks: list[int] = field(default_factory=list)
    verify: int | None = None
    scraps: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Harness:
    def __init__(self, target: Path, root: Path) -> None:
        self.target = target
        self.system = UiSystem.from_target(load_target(target))
        self.env = {**os.environ, "KFM_INCIDENT_ROOT": str(root), "KFM_ACTOR": "tester"}
        self.root = root
        self.faults = threading.Lock()  # faults.json is read-modify-write

    def kfm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KFM_BIN), *args], capture_output=True, text=True, env=self.env, timeout=600
        )

    def fault(self, name: str, on: bool) -> None:
        with self.faults:
            supervisor.fault(self.target.parent, name, on)

    def incident(self, title: str) -> tuple[str, Path]:
        made = self.kfm("incident", "new", "--title", title, "--severity", "Sev2")
        assert made.returncode == 0, made.stderr
        incident_id = made.stdout.strip()
        return incident_id, self.root / incident_id

    def run(
        self,
        flow: Flow,
        step: str,
        runbook: str,
        incident: tuple[str, Path],
        target: Path,
        *extra: str,
    ) -> None:
        incident_id, ws = incident
        done = self.kfm(
            "run", runbook, "--incident", incident_id, "--target", str(target), "--json", *extra
        )
        out = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        out["_exit"], out["_stderr"] = done.returncode, done.stderr[-2000:]
        flow.runs[step] = out
        if "notebook" in out:
            book = scrapbook.read_notebook(str(ws / out["notebook"]))
            flow.scraps[step] = {name: s.data for name, s in book.scraps.items()}
            flow.codes[step] = sorted(
                {
                    s.data["code"]
                    for name, s in book.scraps.items()
                    if name.startswith("kfm.finding.")
                }
            )
        entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
        flow.actions[step] = [e["data"] for e in entries if e["kind"] == "action"]

    def fault_flow(self, runbook: str) -> Flow:
        flow, case = Flow(), CASES[runbook]
        self.fault(case.fault, True)
        try:
            incident = self.incident(f"{case.fault} flow")
            self.run(flow, "triage", runbook, incident, self.target)
            self.run(flow, "apply", runbook, incident, self.target, "--apply")
            flow.broken["after apply"] = case.broken(self.system)
            self.run(flow, "again", runbook, incident, self.target, "--apply")
            for action in reversed(flow.actions["apply"]):
                undone = self.kfm("rollback", incident[0], action["action_id"], "--apply")
                flow.rollbacks.append(undone.returncode)
            flow.broken["after rollback"] = case.broken(self.system)
            flow.verify = self.kfm("verify", incident[0]).returncode
        except Exception as exc:  # reported by the tests, never hidden
            flow.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.fault(case.fault, False)
        return flow


def _phase(*lanes: list[tuple[str, Callable[[], Flow]]]) -> dict[str, Flow]:
    """Lanes run side by side; the jobs of one lane one after the other."""

    def lane(jobs: list[tuple[str, Callable[[], Flow]]]) -> dict[str, Flow]:
        return {name: job() for name, job in jobs}

    results: dict[str, Flow] = {}
    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        for done in pool.map(lane, lanes):
            results.update(done)
    return results


@pytest.fixture(scope="module")
def flows(live_sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flow]:
    h = Harness(live_sandbox, tmp_path_factory.mktemp("ui-incidents"))
    folder = live_sandbox.parent
    try:
        results = _phase(  # the UI release touches nothing the other two read
            [(A11Y, lambda: h.fault_flow(A11Y))],
            [
                (REGISTRY, lambda: h.fault_flow(REGISTRY)),
                (TIMELINE, lambda: h.fault_flow(TIMELINE)),
            ],
        )
        results[STORIES] = h.fault_flow(STORIES)  # it reads layers and times: alone
        return results
    finally:
        live_part.write_state(
            folder / "live", json.loads((folder / "live/config.json").read_text())
        )


def _ok(flow: Flow) -> Flow:
    assert flow.error is None, flow.error
    return flow


@pytest.mark.parametrize("runbook", list(CASES))
def test_fault_is_found_and_the_run_fails(flows: dict[str, Flow], runbook: str) -> None:
    flow = _ok(flows[runbook])
    triage = flow.runs["triage"]
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage["_stderr"]
    assert flow.codes["triage"] == CASES[runbook].codes
    assert flow.actions["triage"] == []  # without --apply nothing changed


@pytest.mark.parametrize("runbook", list(CASES))
def test_apply_fixes_it(flows: dict[str, Flow], runbook: str) -> None:
    flow = _ok(flows[runbook])
    fixed = flow.runs["apply"]
    assert fixed["_exit"] == 0 and fixed["outcome"] == "passed", fixed["_stderr"]
    assert_pass_coverage(fixed["checks"])
    applied = flow.actions["apply"]
    assert len(applied) == CASES[runbook].actions
    assert all(a["ok"] and a["undo"] for a in applied)
    assert flow.broken["after apply"] is False


@pytest.mark.parametrize("runbook", list(CASES))
def test_a_second_apply_changes_nothing(flows: dict[str, Flow], runbook: str) -> None:
    flow = _ok(flows[runbook])
    again = flow.runs["again"]
    assert again["_exit"] == 0 and again["outcome"] == "passed", again["_stderr"]
    assert_pass_coverage(again["checks"])
    assert flow.actions["again"] == flow.actions["apply"]


@pytest.mark.parametrize("runbook", list(CASES))
def test_rollback_undoes_every_step(flows: dict[str, Flow], runbook: str) -> None:
    flow = _ok(flows[runbook])
    assert flow.rollbacks == [0] * CASES[runbook].actions
    assert flow.broken["after rollback"] is True  # the undo restored what it replaced
    assert flow.verify == 0


@pytest.mark.parametrize("runbook", list(CASES))
def test_the_intended_system_passes(runbook: str) -> None:
    out = golden_run(runbook, "live")  # golden_run: why no kernel run is needed
    assert set(out["statuses"].values()) == {"PASS"} and out["codes"] == [], out["statuses"]


def test_kfm_layer_contracts_reach_every_stated_verdict() -> None:
    out = golden_run(REGISTRY, "kfm-layer-contracts")
    rows = out["scraps"]["kfm.table.kfm_contract_verdicts"]
    assert len(rows) == 43
    assert [r["case"] for r in rows if r["matches_expected"] is not True] == []
    assert out["statuses"] == {
        "kfm-view-registries": "FAIL",
        "kfm-layer-manifests": "FAIL",
        "kfm-runtime-admission": "FAIL",
    }
