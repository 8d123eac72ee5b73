"""The four ai runbooks against a stock Focus-Mode-shaped service (not the sandbox), through the
CLI, papermill and the real kernel, with a target that uses only the contract's keys
(api, focus, admin): each gets the verdict a human would give, and --apply fixes what it finds
through the service's own admin interface."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scrapbook

from kfm_runbooks.checks.ai import citations as ai_citations
from kfm_runbooks.checks.ai import evaluation as ai_eval
from kfm_runbooks.checks.ai import focus as ai_focus
from kfm_runbooks.checks.ai import gate as ai_gate
from kfm_runbooks.target import load_target

from .conftest import Cli
from .helpers import applied_actions as _actions
from .helpers import run_json as _run
from .stock import focus_service as stock

pytestmark = pytest.mark.slow

CITATIONS = "RBK-ai-citations-missing"
INJECTION = "RBK-ai-prompt-injection"
RETRIEVAL = "RBK-ai-retrieval-failure"
DRIFT = "RBK-ai-eval-drift"
RUNBOOKS = (CITATIONS, INJECTION, RETRIEVAL, DRIFT)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stock.Stock]:
    service, process = stock.start(tmp_path_factory.mktemp("stock-focus-runbooks"))
    try:
        yield service
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def service(running: stock.Stock) -> Iterator[stock.Stock]:
    running.set_state("healthy")
    try:
        yield running
    finally:
        running.set_state("healthy")


def _system(service: stock.Stock) -> ai_focus.FocusSystem:
    system = ai_focus.FocusSystem.from_target(load_target(service.target()))
    assert system is not None
    return system


def _codes(ws: Path, out: dict[str, Any]) -> set[str]:
    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return {
        s.data["code"]
        for name, s in book.scraps.items()
        if name.startswith("kfm.finding.") and s.data["severity"] != "info"
    }


def _uncited(service: stock.Stock) -> bool:
    answers = ai_citations.ask_evaluation(_system(service))
    return any(a.answered and not a.citations for a in answers)


def _gate_open(service: stock.Stock) -> bool:
    return bool(ai_gate.probe(_system(service)).allowed)


def _no_retrieval(service: stock.Stock) -> bool:
    return any(a.index_unavailable for a in ai_citations.ask_evaluation(_system(service)))


def _drifted(service: stock.Stock) -> bool:
    live = ai_eval.run_live(_system(service))
    return live is None or live.passed is not True


# runbook -> (variant, fault still present?, non-info codes its triage must find)
CASES: dict[str, tuple[str, Any, set[str]]] = {
    CITATIONS: ("uncited", _uncited, {"AI_ANSWER_UNCITED"}),
    INJECTION: ("gate-open", _gate_open, {"AI_INJECTION_PROBE_ALLOWED"}),
    RETRIEVAL: (
        "retrieval-broken",
        _no_retrieval,
        {"AI_FOCUS_503", "AI_HEALTH_RETRIEVAL_DEGRADED"},
    ),
    DRIFT: ("drifted", _drifted, {"AI_EVAL_ACCURACY_BELOW_MIN", "AI_EVAL_DATASET_BELOW_MIN"}),
}


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_a_healthy_stock_focus_mode_passes(
    cli: Cli, incident: tuple[str, Path], service: stock.Stock, runbook: str
) -> None:
    incident_id, ws = incident
    out = _run(cli, runbook, incident_id, service.target())
    assert out["_exit"] == 0 and out["outcome"] == "passed", out["_stderr"][-3000:]
    assert _codes(ws, out) == set()
    assert _actions(ws) == []


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_each_fault_is_found_then_fixed_through_the_admin_interface(
    cli: Cli, incident: tuple[str, Path], service: stock.Stock, runbook: str
) -> None:
    incident_id, ws = incident
    variant, present, codes = CASES[runbook]
    service.set_state(variant)
    target = service.target()

    triage = _run(cli, runbook, incident_id, target)
    assert triage["_exit"] == 1 and triage["outcome"] == "failed", triage["_stderr"][-3000:]
    assert codes <= _codes(ws, triage)
    assert present(service) and _actions(ws) == []  # without --apply nothing changed

    fixed = _run(cli, runbook, incident_id, target, "--apply")
    assert fixed["_exit"] == 0 and fixed["outcome"] == "passed", fixed["_stderr"][-3000:]
    assert not present(service)
    applied = _actions(ws)
    assert applied and all(a["ok"] and a["applied"] for a in applied)
    interfaces = ("POST admin.flags_url ", f"{sys.executable} ")  # never a file write
    assert all(a["command"].startswith(interfaces) for a in applied), applied
    if runbook == DRIFT:  # contained (Focus Mode off), rebuilt, switched back on and proven
        assert [a["title"].split(" ")[0] for a in applied] == ["Disable", "Rebuild", "Re-enable"]

    again = _run(cli, runbook, incident_id, target, "--apply")
    assert again["_exit"] == 0 and again["outcome"] == "passed"
    assert _actions(ws) == applied  # idempotent: the second apply changed nothing


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_without_an_evaluation_set_the_verdict_is_hold(
    cli: Cli, incident: tuple[str, Path], service: stock.Stock, runbook: str
) -> None:
    incident_id, ws = incident
    target = service.target("no-eval.yaml", drop=("eval_set",))
    out = _run(cli, runbook, incident_id, target)
    assert out["_exit"] == 1 and out["outcome"] == "hold", out["_stderr"][-3000:]
    assert "AI_EVAL_SET_MISSING" in _codes(ws, out)
    assert "FAIL" not in out["statuses"].values()


def test_without_an_admin_interface_the_fix_is_a_manual_action(
    cli: Cli, incident: tuple[str, Path], service: stock.Stock
) -> None:
    incident_id, ws = incident
    service.set_state("uncited")
    target = service.target("no-admin.yaml", admin=False)
    out = _run(cli, CITATIONS, incident_id, target, "--apply")
    assert out["_exit"] == 1 and out["outcome"] == "failed", out["_stderr"][-3000:]
    assert _uncited(service)  # nothing was changed behind the operator's back
    manual = [a for a in _actions(ws) if a.get("manual")]
    assert [a["applied"] for a in manual] == [False, False]
    assert "withhold_uncited = true" in str(manual[0]) and "cite_sources = true" in str(manual[1])
